using Kiln.Backends;
using ILGPU;
using Kiln.Kernels;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

public sealed partial class IlgpuBackend
{
    static Index3D Rows(int rows) => new(rows, 1, 1);
    Index3D Group => new(GroupSize, 1, 1);

    /// <inheritdoc/>
    public void ReduceRows(ReduceOp op, Tensor x, int rows, int len, Tensor y) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32 when op == ReduceOp.Prod: FloatReduceKernels<float, F32>.ProdRows.Launch(Driver, Rows(rows), Group, V<float>(x), Off(x), len, V<float>(y), Off(y)); break;
            case DType.Float64 when op == ReduceOp.Prod: FloatReduceKernels<double, F64>.ProdRows.Launch(Driver, Rows(rows), Group, V<double>(x), Off(x), len, V<double>(y), Off(y)); break;
            case DType.Float32: ReduceRowsT<float, F32>(op, x, rows, len, y); break;
            case DType.Float64: ReduceRowsT<double, F64>(op, x, rows, len, y); break;
            case DType.Int32: ReduceRowsT<int, I32>(op, x, rows, len, y); break;
            case DType.Int64: ReduceRowsT<long, I64>(op, x, rows, len, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y], (i, o) => ReduceRows(op, i[0]!, rows, len, o[0]!)); break;
            default: throw Unsupported("reduce " + op, x.DType);
        }
    });

    void ReduceRowsT<T, TN>(ReduceOp op, Tensor x, int rows, int len, Tensor y) where T : unmanaged where TN : struct, INum<T> =>
        (Driver.SupportsWarp ? ReduceKernels<T, TN>.RowsWarp : ReduceKernels<T, TN>.Rows)
            .Launch(Driver, Rows(rows), Group, V<T>(x), Off(x), len, V<T>(y), Off(y), (int)op);

    /// <inheritdoc/>
    public void ReduceCols(ReduceOp op, Tensor x, int len, int cols, Tensor y) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32 when op == ReduceOp.Prod: FloatReduceKernels<float, F32>.ProdCols.Launch(Driver, cols, V<float>(x), Off(x), len, cols, V<float>(y), Off(y)); break;
            case DType.Float64 when op == ReduceOp.Prod: FloatReduceKernels<double, F64>.ProdCols.Launch(Driver, cols, V<double>(x), Off(x), len, cols, V<double>(y), Off(y)); break;
            case DType.Float32: ReduceColsT<float, F32>(op, x, len, cols, y); break;
            case DType.Float64: ReduceColsT<double, F64>(op, x, len, cols, y); break;
            case DType.Int32: ReduceColsT<int, I32>(op, x, len, cols, y); break;
            case DType.Int64: ReduceColsT<long, I64>(op, x, len, cols, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y], (i, o) => ReduceCols(op, i[0]!, len, cols, o[0]!)); break;
            default: throw Unsupported("reduce " + op, x.DType);
        }
    });

    void ReduceColsT<T, TN>(ReduceOp op, Tensor x, int len, int cols, Tensor y) where T : unmanaged where TN : struct, INum<T> =>
        ReduceKernels<T, TN>.Cols.Launch(Driver, cols, V<T>(x), Off(x), len, cols, V<T>(y), Off(y), (int)op);

    /// <inheritdoc/>
    public void ArgReduceRows(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32: ArgRowsT<float, F32>(max, x, rows, len, values, indices); break;
            case DType.Float64: ArgRowsT<double, F64>(max, x, rows, len, values, indices); break;
            case DType.Int32: ArgRowsT<int, I32>(max, x, rows, len, values, indices); break;
            case DType.Int64: ArgRowsT<long, I64>(max, x, rows, len, values, indices); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [values, indices], (i, o) => ArgReduceRows(max, i[0]!, rows, len, o[0]!, o[1]!)); break;
            default: throw Unsupported(max ? "argmax" : "argmin", x.DType);
        }
    });

    void ArgRowsT<T, TN>(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices) where T : unmanaged where TN : struct, INum<T> =>
        ReduceKernels<T, TN>.ArgRows.Launch(Driver, Rows(rows), Group, V<T>(x), Off(x), len, max ? 1 : 0, V<T>(values), V<long>(indices));

    /// <inheritdoc/>
    public void CumsumRows(Tensor x, int rows, int len, bool reverse, Tensor y) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32: CumsumT<float, F32>(x, rows, len, reverse, y); break;
            case DType.Float64: CumsumT<double, F64>(x, rows, len, reverse, y); break;
            case DType.Int32: CumsumT<int, I32>(x, rows, len, reverse, y); break;
            case DType.Int64: CumsumT<long, I64>(x, rows, len, reverse, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y], (i, o) => CumsumRows(i[0]!, rows, len, reverse, o[0]!)); break;
            default: throw Unsupported("cumsum", x.DType);
        }
    });

    void CumsumT<T, TN>(Tensor x, int rows, int len, bool reverse, Tensor y) where T : unmanaged where TN : struct, INum<T> =>
        ReduceKernels<T, TN>.CumsumRows.Launch(Driver, Rows(rows), Group, V<T>(x), Off(x), len, reverse ? 1 : 0, V<T>(y));

    /// <inheritdoc/>
    public void ScanRows(ScanOp op, Tensor x, int rows, int len, bool reverse, Tensor y, Tensor? indices) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32 when op == ScanOp.LogSumExp: FloatReduceKernels<float, F32>.LogCumSumExpRows.Launch(Driver, Rows(rows), Group, V<float>(x), Off(x), len, reverse ? 1 : 0, V<float>(y)); break;
            case DType.Float64 when op == ScanOp.LogSumExp: FloatReduceKernels<double, F64>.LogCumSumExpRows.Launch(Driver, Rows(rows), Group, V<double>(x), Off(x), len, reverse ? 1 : 0, V<double>(y)); break;
            case DType.Float32: ScanT<float, F32>(op, x, rows, len, reverse, y, indices); break;
            case DType.Float64: ScanT<double, F64>(op, x, rows, len, reverse, y, indices); break;
            case DType.Int32 when op != ScanOp.LogSumExp: ScanT<int, I32>(op, x, rows, len, reverse, y, indices); break;
            case DType.Int64 when op != ScanOp.LogSumExp: ScanT<long, I64>(op, x, rows, len, reverse, y, indices); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y, indices], (i, o) => ScanRows(op, i[0]!, rows, len, reverse, o[0]!, o[1])); break;
            default: throw Unsupported(Kiln.Backends.CpuBackend.ScanName(op), x.DType);
        }
    });

    void ScanT<T, TN>(ScanOp op, Tensor x, int rows, int len, bool reverse, Tensor y, Tensor? indices) where T : unmanaged where TN : struct, INum<T>
    {
        if (op == ScanOp.Prod) ReduceKernels<T, TN>.CumprodRows.Launch(Driver, Rows(rows), Group, V<T>(x), Off(x), len, reverse ? 1 : 0, V<T>(y));
        else ReduceKernels<T, TN>.ArgScanRows.Launch(Driver, Rows(rows), Group, V<T>(x), Off(x), len, op == ScanOp.Max ? 1 : 0, reverse ? 1 : 0, V<T>(y),
            V<long>(indices ?? throw new ArgumentNullException(nameof(indices), $"{Kiln.Backends.CpuBackend.ScanName(op)}: the running extreme needs an indices tensor")));
    }

    /// <inheritdoc/>
    public void AnyAllRows(bool all, Tensor x, int rows, int len, Tensor y) => Locked(() =>
        ReduceKernels.AnyAllRows.Launch(Driver, rows, V<byte>(x), Off(x), len, all ? 1 : 0, V<byte>(y)));
}
