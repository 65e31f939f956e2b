using System.Buffers;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Drives row kernels over strided, broadcast operands: dims are coalesced so contiguous data becomes one long row,
/// each row's operands with stride 1 are passed as spans, others are gathered into a scratch row first.
/// Large work is split across cores by rows (or by chunks of a single row).
/// </summary>
public static class Strided
{
    /// <summary>Elements below which work stays on the calling thread.</summary>
    public const int ParallelThreshold = 1 << 16;

    /// <summary>
    /// Drops size-1 dims and merges neighbours that are contiguous in every operand. The result has rank at least 1.
    /// </summary>
    public static (int[] Shape, int[][] Strides) Coalesce(ReadOnlySpan<int> shape, params int[][] strides)
    {
        // Built in stack scratch (operand k's strides at k * rank), then copied out at their coalesced length.
        int n = strides.Length, rank = Math.Max(shape.Length, 1);
        Span<int> dims = rank <= 32 ? stackalloc int[rank] : new int[rank];
        Span<int> strs = n * rank <= 128 ? stackalloc int[n * rank] : new int[n * rank];
        int count = 0;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == 1) continue;
            bool merge = count > 0;
            for (int k = 0; k < n && merge; k++) merge = strs[k * rank + count - 1] == strides[k][i] * shape[i];
            if (merge) dims[count - 1] *= shape[i];
            else dims[count++] = shape[i];
            for (int k = 0; k < n; k++) strs[k * rank + count - 1] = strides[k][i];
        }
        if (count == 0)
        {
            dims[0] = 1;
            for (int k = 0; k < n; k++) strs[k * rank] = 1;
            count = 1;
        }
        var outStrides = new int[n][];
        for (int k = 0; k < n; k++) outStrides[k] = strs.Slice(k * rank, count).ToArray();
        return (dims[..count].ToArray(), outStrides);
    }

    /// <summary>
    /// The element count when both operands are dense and row-major over <paramref name="shape"/> (size-1 dims aside)
    /// and too few to split over threads, else -1: such an op is one call on two spans, with no coalescing or row loop.
    /// 0 for an empty shape (whose offsets may lie past the data).
    /// </summary>
    public static int SmallDense(ReadOnlySpan<int> shape, int[] a, int[] b)
    {
        long n = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            int d = shape[i];
            if (d != 1 && (a[i] != n || b[i] != n)) return d == 0 ? 0 : -1;
            n *= d;
        }
        return n < ParallelThreshold ? (int)n : -1;
    }

    /// <summary>Storage offset of row <paramref name="row"/> (all dims but the last) of an operand.</summary>
    public static int RowOffset(int row, int[] shape, int[] strides, int offset)
    {
        for (int d = shape.Length - 2; d >= 0; d--)
        {
            int i = row % shape[d];
            row /= shape[d];
            offset += i * strides[d];
        }
        return offset;
    }

    /// <summary>Whether <see cref="Parallel"/> would run all of [0, count) on the calling thread (so a caller can skip making its closure).</summary>
    public static bool Inline(int count, long work) => count <= 1 || work < ParallelThreshold || WorkerTeam.Threads <= 1;

    /// <summary>Runs body(start, end) over [0, count) in chunks on all cores when <paramref name="work"/> is large.</summary>
    public static void Parallel(int count, long work, Action<int, int> body)
    {
        int threads = WorkerTeam.Threads;
        if (count <= 1 || threads <= 1 || work < ParallelThreshold) { body(0, count); return; }
        int chunks = (int)Math.Min(count, Math.Min(threads * 4L, work / (ParallelThreshold / 4)));
        chunks = Math.Max(chunks, 2);
        WorkerTeam.For(chunks, c =>
        {
            int s = (int)((long)count * c / chunks), e = (int)((long)count * (c + 1) / chunks);
            if (e > s) body(s, e);
        }, homeBlocks: true);
    }

    /// <summary>A span over the operand's row when its stride is 1; otherwise the row gathered into <paramref name="scratch"/>.</summary>
    public static ReadOnlySpan<T> Row<T>(T[] data, int offset, int stride, int len, T[] scratch)
    {
        if (stride == 1) return data.AsSpan(offset, len);
        if (stride == 0) { scratch.AsSpan(0, len).Fill(data[offset]); return scratch.AsSpan(0, len); }
        for (int i = 0, p = offset; i < len; i++, p += stride) scratch[i] = data[p];
        return scratch.AsSpan(0, len);
    }

    /// <summary>Writes a computed row back to a strided destination.</summary>
    public static void Store<T>(ReadOnlySpan<T> row, T[] data, int offset, int stride)
    {
        for (int i = 0, p = offset; i < row.Length; i++, p += stride) data[p] = row[i];
    }

    /// <summary>
    /// Calls <paramref name="rowKernel"/>(outerRow, start, length) over the iteration space <paramref name="shape"/>.
    /// A single long row is cut into one contiguous piece per core (many small pieces cost bandwidth: each restarts the
    /// hardware prefetchers); several rows are spread over the cores whole.
    /// </summary>
    public static void ForEachRow(int[] shape, Action<int, int, int> rowKernel)
    {
        int inner = shape[^1];
        long numel = 1;
        foreach (int d in shape) numel *= d;
        if (numel == 0) return;
        int rows = (int)(numel / inner);
        if (rows == 1)
        {
            int pieces = numel < ParallelThreshold * 4 ? 1 : Math.Min(WorkerTeam.Threads, (int)(numel / ParallelThreshold));
            if (pieces <= 1) { rowKernel(0, 0, inner); return; }
            WorkerTeam.For(pieces, p =>
            {
                int s = (int)((long)inner * p / pieces), e = (int)((long)inner * (p + 1) / pieces);
                rowKernel(0, s, e - s);
            }, homeBlocks: true);
            return;
        }
        Parallel(rows, numel, (s, e) => { for (int r = s; r < e; r++) rowKernel(r, 0, inner); });
    }

    /// <summary>The operand's row as a span: its storage when the stride is 1, else gathered into a rented scratch row
    /// that the caller returns with <see cref="Return{T}"/> when <paramref name="rented"/> is not null.</summary>
    public static ReadOnlySpan<T> RowView<T>(T[] data, int offset, int stride, int len, out T[]? rented)
    {
        if (stride == 1) { rented = null; return data.AsSpan(offset, len); }
        rented = Rent<T>(len);
        return Row(data, offset, stride, len, rented);
    }

    /// <summary>Rents a scratch row of at least <paramref name="len"/> elements.</summary>
    public static T[] Rent<T>(int len) => ArrayPool<T>.Shared.Rent(Math.Max(len, 1));
    /// <summary>Returns a scratch row (null is ignored).</summary>
    public static void Return<T>(T[]? buffer) { if (buffer is not null) ArrayPool<T>.Shared.Return(buffer); }
}
