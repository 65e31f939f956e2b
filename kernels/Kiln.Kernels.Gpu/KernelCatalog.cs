namespace Kiln.Kernels.Gpu;

/// <summary>Dtype names of kernel instantiations (the last part of a kernel's name).</summary>
public static class Dt
{
    /// <summary>The dtype name of ops struct <typeparamref name="TOps"/>: f32, f64, i32, i64, bool, bf16 or f16.</summary>
    public static string Of<TOps>() where TOps : struct =>
        typeof(TOps) == typeof(F32) ? "f32" : typeof(TOps) == typeof(F64) ? "f64" : typeof(TOps) == typeof(I32) ? "i32"
        : typeof(TOps) == typeof(I64) ? "i64" : typeof(TOps) == typeof(U8) ? "bool" : typeof(TOps) == typeof(BF16) ? "bf16"
        : typeof(TOps) == typeof(F16) ? "f16" : throw new ArgumentException($"{typeof(TOps).Name} is not a Kiln ops struct", nameof(TOps));

    /// <summary>The name of storage type <typeparamref name="T"/> for kernels that only move elements: f32, f64, i32, i64, bool or u16.</summary>
    public static string Storage<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? "f32" : typeof(T) == typeof(double) ? "f64" : typeof(T) == typeof(int) ? "i32"
        : typeof(T) == typeof(long) ? "i64" : typeof(T) == typeof(byte) ? "bool" : typeof(T) == typeof(ushort) ? "u16"
        : throw new ArgumentException($"{typeof(T).Name} is not a Kiln storage type", nameof(T));
}

/// <summary>
/// Every built-in GPU kernel instantiation the ILGPU backend can launch: the list that emission, validation and tests
/// walk. The kernels themselves are the typed fields of each family's <c>...Kernels</c> class; kernels that extensions
/// register (see <see cref="Register"/>) are listed after them.
/// </summary>
public static class KernelCatalog
{
    static readonly List<GpuKernel> Extra = [];

    /// <summary>The built-in kernels, in a stable order.</summary>
    public static IReadOnlyList<GpuKernel> BuiltIn { get; } = Build();

    /// <summary>The built-in kernels and every registered one.</summary>
    public static IReadOnlyList<GpuKernel> All
    {
        get { lock (Extra) return [.. BuiltIn, .. Extra]; }
    }

    /// <summary>Lists <paramref name="kernel"/> with the built-in ones (for emission and validation); registering the same kernel again does nothing.</summary>
    /// <exception cref="ArgumentException">Another kernel has the same name.</exception>
    public static void Register(GpuKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        lock (Extra)
        {
            var same = BuiltIn.Concat(Extra).FirstOrDefault(k => k.Name == kernel.Name);
            if (ReferenceEquals(same, kernel)) return;
            if (same is not null) throw new ArgumentException($"a kernel named {kernel.Name} is already registered", nameof(kernel));
            Extra.Add(kernel);
        }
    }

    static List<GpuKernel> Build()
    {
        var list = new List<GpuKernel>();
        void Moves<T>() where T : unmanaged => list.AddRange([ElementwiseKernels<T>.Fill, ElementwiseKernels<T>.Copy]);
        Moves<float>(); Moves<double>(); Moves<int>(); Moves<long>(); Moves<byte>(); Moves<ushort>();

        // Conversions between every pair of dtypes.
        void From<TIn, TA>() where TIn : unmanaged where TA : struct, IElement<TIn>
        {
            void To<TOut, TB>() where TOut : unmanaged where TB : struct, IElement<TOut>
            {
                if (typeof(TA) != typeof(TB)) list.Add(ConvertKernels<TIn, TOut, TA, TB>.Convert);
            }
            To<float, F32>(); To<double, F64>(); To<int, I32>(); To<long, I64>(); To<byte, U8>(); To<ushort, BF16>(); To<ushort, F16>();
        }
        From<float, F32>(); From<double, F64>(); From<int, I32>(); From<long, I64>(); From<byte, U8>(); From<ushort, BF16>(); From<ushort, F16>();

        void Floats<T, TF>() where T : unmanaged where TF : struct, IFloat<T> => list.Add(UnaryKernels<T, TF>.Unary);
        Floats<float, F32>(); Floats<double, F64>();
        void Numbers<T, TN>() where T : unmanaged where TN : struct, INum<T> =>
            list.AddRange([ElementwiseKernels<T, TN>.Binary, ElementwiseKernels<T, TN>.Compare, ElementwiseKernels<T, TN>.Clamp]);
        Numbers<float, F32>(); Numbers<double, F64>(); Numbers<int, I32>(); Numbers<long, I64>();
        void Integers<T, TN>() where T : unmanaged where TN : struct, INum<T> => list.AddRange([IntegerKernels<T, TN>.Unary, IntegerKernels<T, TN>.Bitwise]);
        Integers<int, I32>(); Integers<long, I64>();
        void Where<T>() where T : unmanaged => list.Add(ElementwiseKernels<T>.Where);
        Where<float>(); Where<double>(); Where<int>(); Where<long>(); Where<byte>();

        void Reductions<T, TN>() where T : unmanaged where TN : struct, INum<T> => list.AddRange(
            [ReduceKernels<T, TN>.Rows, ReduceKernels<T, TN>.RowsWarp, ReduceKernels<T, TN>.Cols, ReduceKernels<T, TN>.ArgRows, ReduceKernels<T, TN>.CumsumRows,
             ReduceKernels<T, TN>.CumprodRows, ReduceKernels<T, TN>.ArgScanRows]);
        Reductions<float, F32>(); Reductions<double, F64>(); Reductions<int, I32>(); Reductions<long, I64>();
        list.AddRange([ReduceKernels.AnyAllRows, FloatReduceKernels<float, F32>.LogCumSumExpRows, FloatReduceKernels<double, F64>.LogCumSumExpRows,
            FloatReduceKernels<float, F32>.ProdRows, FloatReduceKernels<double, F64>.ProdRows, FloatReduceKernels<float, F32>.ProdCols, FloatReduceKernels<double, F64>.ProdCols]);

        void Fused<T, TF>() where T : unmanaged where TF : struct, IFloat<T> => list.AddRange(
            [SoftmaxKernels<T, TF>.Rows, LayerNormKernels<T, TF>.Rows, LayerNormKernels<T, TF>.RmsRows, GemmKernels<T, TF>.Tiled,
             AttentionKernels<T, TF>.Forward, AttentionKernels<T, TF>.Delta, AttentionKernels<T, TF>.GradQ, AttentionKernels<T, TF>.GradKV,
             RecurrentKernels<T, TF>.Lstm, RecurrentKernels<T, TF>.Gru, SequenceKernels<T, TF>.CausalConv, LinearAttentionKernels<T, TF>.Causal]);
        Fused<float, F32>(); Fused<double, F64>();
        list.AddRange([GemmKernels<int, I32>.Integer, GemmKernels<long, I64>.Integer, HalfGemmKernels<WidenBF16>.Tiled, HalfGemmKernels<WidenF16>.Tiled]);
        void Convs<T, TF>() where T : unmanaged where TF : struct, IFloat<T> => list.Add(ConvKernels<T, TF>.Tiled); Convs<float, F32>(); Convs<double, F64>();

        void Plain<T, TN>() where T : unmanaged where TN : struct, INum<T> =>
            list.AddRange([IndexingKernels<T>.Gather, IndexingKernels<T, TN>.Scatter, PhiloxKernels<T, TN>.Fill]);
        Plain<float, F32>(); Plain<double, F64>(); Plain<int, I32>(); Plain<long, I64>(); Plain<byte, U8>();

        void Sorts<T, TN>() where T : unmanaged where TN : struct, INum<T> => list.AddRange(
            [SortKernels<T, TN>.RankRows, SortKernels<T>.BitonicInit, SortKernels<T, TN>.BitonicStep, SortKernels<T>.BitonicFinish, SortKernels<T, TN>.SearchSorted]);
        Sorts<float, F32>(); Sorts<double, F64>(); Sorts<int, I32>(); Sorts<long, I64>();
        list.AddRange(PoolKernels.All);
        list.AddRange(ResampleKernels.All);
        return list;
    }
}
