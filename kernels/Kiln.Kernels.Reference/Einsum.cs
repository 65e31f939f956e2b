namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>
    /// einsum by direct summation: every assignment of the labels is visited once, the operands' entries at it are
    /// multiplied, and the product is added to the output entry the output labels name. <paramref name="labels"/>[i][d]
    /// is the label of operand i's dim d (a label repeated within an operand reads its diagonal); an operand dim of size 1
    /// broadcasts against the label's size elsewhere. Operands are contiguous row-major; the result is too.
    /// </summary>
    public static double[] Einsum(int[][] labels, int[][] shapes, double[][] operands, int[] output, IReadOnlyDictionary<int, int> sizes)
    {
        var all = sizes.Keys.Order().ToArray();
        var position = all.Select((l, i) => (l, i)).ToDictionary(t => t.l, t => t.i);
        int outCount = 1;
        foreach (int l in output) outCount *= sizes[l];
        var y = new double[outCount];
        long total = 1;
        foreach (int l in all) total *= sizes[l];
        if (total == 0) return y;
        var at = new int[all.Length];
        int[][] slot = [.. labels.Select(ls => ls.Select(l => position[l]).ToArray())];
        int[] outSlot = [.. output.Select(l => position[l])];
        for (long step = 0; step < total; step++)
        {
            double p = 1;
            for (int i = 0; i < operands.Length; i++)
            {
                int flat = 0;
                for (int d = 0; d < labels[i].Length; d++)
                    flat = flat * shapes[i][d] + (shapes[i][d] == 1 ? 0 : at[slot[i][d]]);
                p *= operands[i][flat];
            }
            int o = 0;
            for (int d = 0; d < output.Length; d++) o = o * sizes[output[d]] + at[outSlot[d]];
            y[o] += p;
            for (int k = all.Length - 1; k >= 0; k--)
            {
                if (++at[k] < sizes[all[k]]) break;
                at[k] = 0;
            }
        }
        return y;
    }
}
