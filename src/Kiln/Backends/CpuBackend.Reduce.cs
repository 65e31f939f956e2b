using System.Numerics;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void ReduceRows(ReduceOp op, Tensor x, int rows, int len, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Reduce.Rows(op, A<float>(x), O(x), rows, len, A<float>(y), O(y)); break;
            case DType.Float64: Reduce.Rows(op, A<double>(x), O(x), rows, len, A<double>(y), O(y)); break;
            case DType.Int32: Reduce.Rows(op, A<int>(x), O(x), rows, len, A<int>(y), O(y)); break;
            case DType.Int64: Reduce.Rows(op, A<long>(x), O(x), rows, len, A<long>(y), O(y)); break;
            case DType.Float16 or DType.BFloat16: ReduceRowsHalf(op, x, rows, len, y); break;
            default: throw Unsupported("reduce " + op, x.DType);
        }
    }

    /// <inheritdoc/>
    public void ReduceCols(ReduceOp op, Tensor x, int len, int cols, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Reduce.Cols(op, A<float>(x), O(x), len, cols, A<float>(y), O(y)); break;
            case DType.Float64: Reduce.Cols(op, A<double>(x), O(x), len, cols, A<double>(y), O(y)); break;
            case DType.Int32: Reduce.Cols(op, A<int>(x), O(x), len, cols, A<int>(y), O(y)); break;
            case DType.Int64: Reduce.Cols(op, A<long>(x), O(x), len, cols, A<long>(y), O(y)); break;
            case DType.Float16 or DType.BFloat16: ReduceColsHalf(op, x, len, cols, y); break;
            default: throw Unsupported("reduce " + op, x.DType);
        }
    }

    /// <inheritdoc/>
    public void ArgReduceRows(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices)
    {
        switch (x.DType)
        {
            case DType.Float32: Reduce.ArgRows(max, A<float>(x), O(x), rows, len, A<float>(values), A<long>(indices)); break;
            case DType.Float64: Reduce.ArgRows(max, A<double>(x), O(x), rows, len, A<double>(values), A<long>(indices)); break;
            case DType.Int32: Reduce.ArgRows(max, A<int>(x), O(x), rows, len, A<int>(values), A<long>(indices)); break;
            case DType.Int64: Reduce.ArgRows(max, A<long>(x), O(x), rows, len, A<long>(values), A<long>(indices)); break;
            case DType.Float16 or DType.BFloat16: ArgReduceRowsHalf(max, x, rows, len, values, indices); break;
            default: throw Unsupported(max ? "argmax" : "argmin", x.DType);
        }
    }

    /// <inheritdoc/>
    public void CumsumRows(Tensor x, int rows, int len, bool reverse, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Reduce.CumsumRows(A<float>(x), O(x), rows, len, reverse, A<float>(y)); break;
            case DType.Float64: Reduce.CumsumRows(A<double>(x), O(x), rows, len, reverse, A<double>(y)); break;
            case DType.Int32: Reduce.CumsumRows(A<int>(x), O(x), rows, len, reverse, A<int>(y)); break;
            case DType.Int64: Reduce.CumsumRows(A<long>(x), O(x), rows, len, reverse, A<long>(y)); break;
            case DType.Float16 or DType.BFloat16: CumsumRowsHalf(x, rows, len, reverse, y); break;
            default: throw Unsupported("cumsum", x.DType);
        }
    }

    /// <summary>The PyTorch name of scan <paramref name="op"/>, for messages.</summary>
    public static string ScanName(ScanOp op) => op switch { ScanOp.Prod => "cumprod", ScanOp.Max => "cummax", ScanOp.Min => "cummin", _ => "logcumsumexp" };

    /// <inheritdoc/>
    public void ScanRows(ScanOp op, Tensor x, int rows, int len, bool reverse, Tensor y, Tensor? indices)
    {
        long[]? idx = indices is null ? null : A<long>(indices);
        switch (x.DType)
        {
            case DType.Float32 when op == ScanOp.LogSumExp: Reduce.LogCumSumExpRows(A<float>(x), O(x), rows, len, reverse, A<float>(y)); break;
            case DType.Float64 when op == ScanOp.LogSumExp: Reduce.LogCumSumExpRows(A<double>(x), O(x), rows, len, reverse, A<double>(y)); break;
            case DType.Float32: Reduce.ScanRows(op, A<float>(x), O(x), rows, len, reverse, A<float>(y), idx); break;
            case DType.Float64: Reduce.ScanRows(op, A<double>(x), O(x), rows, len, reverse, A<double>(y), idx); break;
            case DType.Int32 when op != ScanOp.LogSumExp: Reduce.ScanRows(op, A<int>(x), O(x), rows, len, reverse, A<int>(y), idx); break;
            case DType.Int64 when op != ScanOp.LogSumExp: Reduce.ScanRows(op, A<long>(x), O(x), rows, len, reverse, A<long>(y), idx); break;
            case DType.Float16 or DType.BFloat16: ScanRowsHalf(op, x, rows, len, reverse, y, indices); break;
            default: throw Unsupported(ScanName(op), x.DType);
        }
    }

    /// <inheritdoc/>
    public void AnyAllRows(bool all, Tensor x, int rows, int len, Tensor y) => Reduce.AnyAllRows(all, A<bool>(x), O(x), rows, len, A<bool>(y));

    void ReduceRowsHalf(ReduceOp op, Tensor x, int rows, int len, Tensor y) => HalfCompute.Run(this, [x], [y], (i, o) => ReduceRows(op, i[0]!, rows, len, o[0]!));
    void ReduceColsHalf(ReduceOp op, Tensor x, int len, int cols, Tensor y) => HalfCompute.Run(this, [x], [y], (i, o) => ReduceCols(op, i[0]!, len, cols, o[0]!));
    void ArgReduceRowsHalf(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices) => HalfCompute.Run(this, [x], [values, indices], (i, o) => ArgReduceRows(max, i[0]!, rows, len, o[0]!, o[1]!));
    void CumsumRowsHalf(Tensor x, int rows, int len, bool reverse, Tensor y) => HalfCompute.Run(this, [x], [y], (i, o) => CumsumRows(i[0]!, rows, len, reverse, o[0]!));
    void ScanRowsHalf(ScanOp op, Tensor x, int rows, int len, bool reverse, Tensor y, Tensor? indices) => HalfCompute.Run(this, [x], [y, indices], (i, o) => ScanRows(op, i[0]!, rows, len, reverse, o[0]!, o[1]));
}
