using System.Globalization;
using System.Text;

namespace Kiln;

public partial class Tensor
{
    /// <summary>Tensors with more elements than this print summarised: the first and last <see cref="PrintEdgeItems"/> along each long dim.</summary>
    public const int PrintThreshold = 1000;
    /// <summary>Entries shown at each end of a summarised dim.</summary>
    public const int PrintEdgeItems = 3;
    const int LineWidth = 80;

    /// <summary>
    /// The values as PyTorch prints them: nested brackets, aligned columns, floats in fixed point with 4 decimals (or
    /// scientific notation when the magnitudes call for it, or "1." when all are whole), integers in full, True/False
    /// for Bool; past <see cref="PrintThreshold"/> elements summarised with "..."; then the dtype and device when they are
    /// not Float32 (or Int64/Bool) and the CPU, and requires_grad.
    /// </summary>
    public override string ToString()
    {
        if (Storage.IsDisposed) return $"tensor(<disposed>, shape={Shape}, dtype={DType}, device={Device})";
        var suffix = new List<string>();
        if (Numel == 0 && Rank != 1) suffix.Add($"size=({string.Join(", ", Shape.ToArray())}{(Rank == 1 ? "," : "")})");
        if (DType is not (DType.Float32 or DType.Int64 or DType.Bool)) suffix.Add($"dtype={DType}");
        if (Device != Device.Cpu) suffix.Add($"device={Device}");
        if (RequiresGrad) suffix.Add("requires_grad=True");
        string body;
        using (Autograd.NoGrad()) body = Body();
        return $"tensor({body}{string.Concat(suffix.Select(x => ", " + x))})";
    }

    string Body()
    {
        if (Numel == 0) return "[]";
        bool summarise = Numel > PrintThreshold;
        // The entries shown: every dim longer than 2 edge counts is cut to its two edges (on the device, before any copy).
        var shown = Detach();
        var cut = new bool[Rank];
        if (summarise)
            for (int d = 0; d < Rank; d++)
                if (Shape[d] > 2 * PrintEdgeItems)
                {
                    cut[d] = true;
                    shown = Concat([shown.Slice(d, 0, PrintEdgeItems), shown.Slice(d, -PrintEdgeItems)], d);
                }
        string[] cells = Cells(shown);
        int width = cells.Max(c => c.Length);
        var sb = new StringBuilder();
        int at = 0;
        void Write(int dim, int indent)
        {
            if (dim == Rank) { sb.Append(cells[at++].PadLeft(width)); return; }
            int n = shown.Shape[dim];
            sb.Append('[');
            int perLine = Math.Max(1, (LineWidth - indent) / (width + 2));
            for (int i = 0; i < n; i++)
            {
                if (i > 0)
                {
                    sb.Append(',');
                    if (dim == Rank - 1) { if (i % perLine == 0) sb.Append('\n').Append(' ', indent + 1); else sb.Append(' '); }
                    else sb.Append('\n', Math.Max(1, Rank - 1 - dim)).Append(' ', indent + 1);
                }
                if (cut[dim] && i == PrintEdgeItems)
                {
                    // As PyTorch: " ..." among the numbers of a row, "..." on its own line between rows.
                    if (dim == Rank - 1) sb.Append(" ..., "); else sb.Append("...,").Append('\n', Math.Max(1, Rank - 1 - dim)).Append(' ', indent + 1);
                }
                Write(dim + 1, indent + 1);
            }
            sb.Append(']');
        }
        // "tensor(" is 7 characters: nested rows line up under the first bracket.
        Write(0, 7);
        return sb.ToString();
    }

    static string[] Cells(Tensor t)
    {
        if (t.DType == DType.Bool) return [.. t.ToDoubleArray().Select(v => v != 0 ? "True" : "False")];
        if (!t.DType.IsFloating())
            return [.. t.To(DType.Int64).ToArray<long>().Select(v => v.ToString(CultureInfo.InvariantCulture))];
        double[] v = t.ToDoubleArray();
        var finite = v.Where(double.IsFinite).Select(Math.Abs).ToArray();
        string Special(double x) => double.IsNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
        if (finite.All(x => x == Math.Floor(x)) && (finite.Length == 0 || finite.Max() < 1e8))
            return [.. v.Select(x => double.IsFinite(x) ? x.ToString("0", CultureInfo.InvariantCulture) + "." : Special(x))];
        var nonzero = finite.Where(x => x != 0).ToArray();
        bool scientific = nonzero.Length > 0 && (nonzero.Max() / nonzero.Min() > 1000 || nonzero.Max() > 1e8 || nonzero.Min() < 1e-4);
        return [.. v.Select(x => !double.IsFinite(x) ? Special(x)
            : scientific ? x.ToString("0.0000e+00", CultureInfo.InvariantCulture) : x.ToString("0.0000", CultureInfo.InvariantCulture))];
    }
}
