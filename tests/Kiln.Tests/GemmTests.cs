using Kiln.Kernels;
using Kiln.Kernels.Cpu;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>The packed GEMM (every micro-kernel, transposes as strides, alpha/beta, batches) and Tensor.MatMul against Reference.Gemm.</summary>
public class GemmTests
{
    // Extents: 0, 1, small odd sizes that leave partial register tiles, and sizes past the cache blocks (KC, MC).
    static FsCheck.Gen<int> Extent => G.Frequency((1, G.Constant(0)), (2, G.Constant(1)), (10, G.Choose(2, 40)), (2, G.Choose(41, 200)), (1, G.Choose(500, 1300)));

    // Operand layouts: 0 row-major, 1 column-major (the transpose), 2 row-major with padded rows, 3 both strides > 1.
    static (int Rs, int Cs, int Len) Layout(int kind, int rows, int cols) => kind switch
    {
        0 => (cols, 1, rows * cols),
        1 => (1, rows, rows * cols),
        2 => (cols + 3, 1, rows * (cols + 3)),
        _ => (2 * cols + 1, 2, rows * (2 * cols + 1)),
    };

    static double[] Dense<T>(T[] data, int off, int rs, int cs, int rows, int cols) where T : struct
    {
        var d = new double[rows * cols];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) d[i * cols + j] = Convert.ToDouble(data[off + i * rs + j * cs]);
        return d;
    }

    // Rounding error bound for a dot product of length k computed in precision u: |err| <= k u sum |a||b| (plus slack for alpha/beta).
    static void CheckGemm(double[] expected, double[] absProducts, double[] actual, int k, double u, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = (k + 4) * u * absProducts[i] + 1e-30;
            Assert.True(Math.Abs(actual[i] - expected[i]) <= tol, $"{what}[{i}]: got {actual[i]:R}, expected {expected[i]:R}, tol {tol:G3}");
        }
    }

    public static IEnumerable<object[]> KernelCases =>
        from kern in new[] { GemmKernel.Vector512, GemmKernel.Vector256, GemmKernel.Scalar }
        where kern != GemmKernel.Vector512 || System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated
        where kern != GemmKernel.Vector256 || System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated
        from dt in new[] { "float", "double" }
        select new object[] { kern, dt };

    [Theory, MemberData(nameof(KernelCases))]
    public void Gemm_matches_reference_for_every_layout_alpha_and_beta(GemmKernel kernel, string dtype)
    {
        var gen = from m in Extent from n in Extent from k in Extent
                  from la in G.Choose(0, 3) from lb in G.Choose(0, 3)
                  from ab in G.Elements((1.0, 0.0), (1.0, 1.0), (-0.5, 2.0), (0.0, 0.5), (1.5, -1.0))
                  from epi in G.Choose(0, 3) from seed in TensorGen.Seed
                  select (m, n, k, la, lb, ab.Item1, ab.Item2, epi, seed);
        Props.Check(gen, c =>
        {
            if (dtype == "float") Case<float>(kernel, c, Math.Pow(2, -24));
            else Case<double>(kernel, c, Math.Pow(2, -53));
        }, maxTest: 40);
    }

    // epi: bit 0 adds a bias row, bit 1 applies ReLU (the fused linear-layer epilogue).
    static void Case<T>(GemmKernel kernel, (int M, int N, int K, int La, int Lb, double Alpha, double Beta, int Epi, int Seed) c, double u)
        where T : unmanaged, System.Numerics.IFloatingPoint<T>
    {
        var (m, n, k, la, lb, alpha, beta, epi, seed) = c;
        var rnd = new Random(seed);
        var (aRs, aCs, aLen) = Layout(la, m, k);
        var (bRs, bCs, bLen) = Layout(lb, k, n);
        int aOff = rnd.Next(4), bOff = rnd.Next(4), cOff = rnd.Next(4), ldc = n + rnd.Next(3);
        T R() => T.CreateTruncating(rnd.NextDouble() * 4 - 2);
        var a = Enumerable.Range(0, aLen + aOff).Select(_ => R()).ToArray();
        var b = Enumerable.Range(0, bLen + bOff).Select(_ => R()).ToArray();
        var cArr = Enumerable.Range(0, cOff + m * ldc + 2).Select(_ => R()).ToArray();
        var c0 = (T[])cArr.Clone();
        var bias = (epi & 1) != 0 ? Enumerable.Range(0, n + 1).Select(_ => R()).ToArray() : null;
        bool relu = (epi & 2) != 0;
        Gemm.Run(m, n, k, T.CreateTruncating(alpha), a, aOff, aRs, aCs, b, bOff, bRs, bCs, T.CreateTruncating(beta), cArr, cOff, ldc, kernel,
            bias: bias, biasOff: 1, relu: relu);

        var ad = Dense(a, aOff, aRs, aCs, m, k); var bd = Dense(b, bOff, bRs, bCs, k, n);
        var ab = Reference.Gemm(m, n, k, ad, bd);
        var abs = Reference.Gemm(m, n, k, ad.Select(Math.Abs).ToArray(), bd.Select(Math.Abs).ToArray());
        var cOld = Dense(c0, cOff, ldc, 1, m, n);
        double Bias(int i) => bias is null ? 0 : Convert.ToDouble(bias[1 + i % Math.Max(n, 1)]);
        var expected = ab.Select((v, i) => alpha * v + beta * cOld[i] + Bias(i)).Select(v => relu ? Math.Max(v, 0) : v).ToArray();
        var bound = abs.Select((v, i) => Math.Abs(alpha) * v + Math.Abs(beta * cOld[i]) + Math.Abs(Bias(i))).ToArray();
        CheckGemm(expected, bound, Dense(cArr, cOff, ldc, 1, m, n), k, u, $"{kernel} {typeof(T).Name} {m}x{n}x{k} layouts {la}/{lb} alpha {alpha} beta {beta} epilogue {epi}");
        // Padding between rows of C (ldc > n) and around it is never written.
        for (int i = 0; i < cArr.Length; i++)
        {
            int r = (i - cOff) / Math.Max(ldc, 1), col = (i - cOff) - r * ldc;
            bool inside = i >= cOff && r < m && col < n;
            if (!inside) Assert.Equal(c0[i], cArr[i]);
        }
    }

    [Theory, MemberData(nameof(KernelCases))]
    public void Gemm_spans_several_column_blocks_and_k_slices(GemmKernel kernel, string dtype)
    {
        // n beyond one NC block (4 MiB of packed B: 1856 float or 1408 double columns at this K) and k beyond one KC
        // slice, with beta != 0 and a bias, so every block boundary of the loop nest is crossed.
        var c = (M: 7, N: 2100, K: 1100, La: 1, Lb: 0, Alpha: 0.5, Beta: 1.0, Epi: 1, Seed: 21);
        // K deep enough for several groups of packed B slices (8 MiB each), split over row strips, with a ragged last group.
        var deep = (M: 49, N: 1000, K: 2600, La: 0, Lb: 0, Alpha: 1.0, Beta: -1.0, Epi: 3, Seed: 22);
        // A last B panel narrower than a full tile runs as half tiles: exactly one, and one full plus one partial.
        int half = dtype == "float" ? GemmMicro.HalfWidth<float>(kernel) : GemmMicro.HalfWidth<double>(kernel);
        var oneHalf = (M: 13, N: half > 0 ? 3 * half : 37, K: 70, La: 0, Lb: 2, Alpha: 1.0, Beta: 0.5, Epi: 1, Seed: 23);
        var twoHalves = oneHalf with { N = oneHalf.N + 5, Lb = 1, Epi = 3, Seed = 24 };
        // A transposed B (a linear layer's weight, packed panel by panel) whose depth and width are not multiples of
        // the 8 x 8 transposed blocks, and one over several column blocks and K slices.
        var transposed = (M: 11, N: 83, K: 75, La: 0, Lb: 1, Alpha: 1.0, Beta: 0.0, Epi: 1, Seed: 25);
        var wideTransposed = c with { La = 0, Lb = 1, Seed = 26 };
        foreach (var x in new[] { c, deep, oneHalf, twoHalves, transposed, wideTransposed })
            if (dtype == "float") Case<float>(kernel, x, Math.Pow(2, -24));
            else Case<double>(kernel, x, Math.Pow(2, -53));
    }

    [Theory]
    [InlineData(97)]    // two micro-panels: the threads share each packed B
    [InlineData(520)]   // nine, the last narrow: each thread packs and runs its own block of columns
    public void Gemm_ignores_nan_in_c_when_beta_is_zero_and_results_do_not_depend_on_threads(int n)
    {
        int m = 131, k = 300;
        var rnd = new Random(3);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)rnd.NextDouble()).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)rnd.NextDouble()).ToArray();
        var bias = Enumerable.Range(0, n).Select(_ => (float)rnd.NextDouble() - 0.5f).ToArray();
        // B row-major (packed in row chunks) and transposed (packed in panels), with and without the epilogue.
        foreach (var (bRs, bCs) in new[] { (n, 1), (1, k) })
            foreach (var epilogue in new[] { false, true })
            {
                var c1 = Enumerable.Repeat(float.NaN, m * n).ToArray();
                var c2 = new float[m * n];
                float[]? bs = epilogue ? bias : null;
                Gemm.Run(m, n, k, 1f, a, 0, k, 1, b, 0, bRs, bCs, 0f, c1, 0, n, threads: 1, bias: bs, relu: epilogue);
                Gemm.Run(m, n, k, 1f, a, 0, k, 1, b, 0, bRs, bCs, 0f, c2, 0, n, threads: 2, bias: bs, relu: epilogue);
                Assert.DoesNotContain(c1, float.IsNaN);
                Assert.Equal(c1, c2);
                var ad = a.Select(v => (double)v).ToArray();
                var bd = Enumerable.Range(0, k * n).Select(i => (double)b[i / n * bRs + i % n * bCs]).ToArray();
                var e = Reference.Gemm(m, n, k, ad, bd);
                if (epilogue) for (int i = 0; i < e.Length; i++) e[i] = Math.Max(0, e[i] + bias[i % n]);
                Close.Check(e, c2.Select(v => (double)v).ToArray(), 1e-5, 1e-5, $"n {n}, B strides ({bRs}, {bCs}), epilogue {epilogue}");
            }
    }

    [Fact]
    public void Gemm_batched_with_broadcast_operand()
    {
        int batch = 3, m = 9, n = 35, k = 17;
        var rnd = new Random(5);
        var a = Enumerable.Range(0, batch * m * k).Select(_ => rnd.NextDouble()).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => rnd.NextDouble()).ToArray();
        var c = new double[batch * m * n];
        Gemm.RunBatched(batch, m, n, k, 1.0, a, 0, m * k, k, 1, b, 0, 0, n, 1, 0.0, c, 0, m * n, n);
        for (int t = 0; t < batch; t++)
        {
            var e = Reference.Gemm(m, n, k, a.AsSpan(t * m * k, m * k), b);
            Close.Check(e, c.AsSpan(t * m * n, m * n), 1e-13, 1e-13, $"batch {t}");
        }
    }

    [Fact]
    public void Many_small_products_run_one_per_thread_with_the_same_result()
    {
        int batch = 64, m = 40, n = 37, k = 41;
        var rnd = new Random(8);
        var a = Enumerable.Range(0, batch * m * k).Select(_ => (float)rnd.NextDouble()).ToArray();
        var b = Enumerable.Range(0, batch * k * n).Select(_ => (float)rnd.NextDouble()).ToArray();
        var c1 = new float[batch * m * n]; var c2 = new float[batch * m * n];
        Gemm.RunBatched(batch, m, n, k, 1f, a, 0, m * k, k, 1, b, 0, k * n, n, 1, 0f, c1, 0, m * n, n, threads: 1);
        Gemm.RunBatched(batch, m, n, k, 1f, a, 0, m * k, k, 1, b, 0, k * n, n, 1, 0f, c2, 0, m * n, n, threads: 2);
        Assert.Equal(c1, c2);
        var ad = a.Select(v => (double)v).ToArray(); var bd = b.Select(v => (double)v).ToArray();
        var e = Reference.Gemm(m, n, k, ad.AsSpan(63 * m * k, m * k), bd.AsSpan(63 * k * n, k * n));
        Close.Check(e, c2.AsSpan(63 * m * n, m * n).ToArray().Select(v => (double)v).ToArray(), 1e-5, 1e-5, "last product");
    }

    [Fact]
    public void Gemm_rejects_element_types_without_a_kernel()
    {
        var x = new int[4];
        Assert.Throws<NotSupportedException>(() => Gemm.Run(2, 2, 1, 1, x, 0, 1, 1, x, 0, 2, 1, 0, x, 0, 2));
    }

    public static IEnumerable<object[]> DeviceDTypes =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    [Theory, MemberData(nameof(DeviceDTypes))]
    public void MatMul_of_strided_and_broadcast_batches_matches_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from m in Extent from n in Extent from k in Extent
                  from batch in G.Elements(Array.Empty<int>(), [1], [3], [2, 3])
                  from bcastA in G.Elements(true, false) from bcastB in G.Elements(true, false)
                  from va in TensorGen.View from vb in TensorGen.View from seed in TensorGen.Seed
                  select (m, n, k, batch, bcastA, bcastB, va, vb, seed);
        Props.Check(gen, c =>
        {
            var (m, n, k, batch, bcastA, bcastB, va, vb, seed) = c;
            // Broadcasting drops or shrinks the batch dims of one operand.
            int[] batchA = bcastA && batch.Length > 0 ? [1, .. batch[1..]] : batch;
            int[] batchB = bcastB && !bcastA ? [] : batch;
            var a = TensorGen.Make([.. batchA, m, k], va, seed, dtype, dev);
            var b = TensorGen.Make([.. batchB, k, n], vb, seed + 1, dtype, dev);
            var y = a.MatMul(b);
            Assert.Equal(new Shape([.. batch, m, n]), y.Shape);
            int nb = new Shape(batch).Numel;
            var ae = a.BroadcastTo(new Shape([.. batch, m, k])).ToDoubleArray();
            var be = b.BroadcastTo(new Shape([.. batch, k, n])).ToDoubleArray();
            var got = y.ToDoubleArray();
            double u = dtype == DType.Float32 ? Math.Pow(2, -24) : Math.Pow(2, -53);
            for (int t = 0; t < nb; t++)
            {
                var at = ae.AsSpan(t * m * k, m * k); var bt = be.AsSpan(t * k * n, k * n);
                var abs = Reference.Gemm(m, n, k, at.ToArray().Select(Math.Abs).ToArray(), bt.ToArray().Select(Math.Abs).ToArray());
                CheckGemm(Reference.Gemm(m, n, k, at, bt), abs, got.AsSpan(t * m * n, m * n).ToArray(), k, u, $"matmul {dtype} batch {t} of [{string.Join(",", batch)}] {m}x{n}x{k} {va}/{vb}");
            }
        }, maxTest: 40);
    }

    [Fact]
    public void MatMul_gradients_match_finite_differences()
    {
        var g = new Generator(11);
        var a = Tensor.Rand(new Shape(2, 7, 5), g, -1, 1, DType.Float64);
        var b = Tensor.Rand(new Shape(5, 9), g, -1, 1, DType.Float64);
        var r = GradCheck.Run(x => x[0].MatMul(x[1]), [a, b]);
        Assert.True(r.Passed, r.ToString());
        var rt = GradCheck.Run(x => x[0].T.MatMul(x[1].T), [Tensor.Rand(new Shape(6, 4), g, -1, 1, DType.Float64), Tensor.Rand(new Shape(3, 6), g, -1, 1, DType.Float64)]);
        Assert.True(rt.Passed, rt.ToString());
    }

    [Theory, MemberData(nameof(DeviceDTypes))]
    public void Linear_with_fused_bias_and_relu_matches_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from rows in Extent from inF in Extent from outF in Extent
                  from lead in G.Elements(Array.Empty<int>(), [2]) from hasBias in G.Elements(true, false) from relu in G.Elements(true, false)
                  from vx in TensorGen.View from vw in TensorGen.View from seed in TensorGen.Seed
                  select (rows, inF, outF, lead, hasBias, relu, vx, vw, seed);
        Props.Check(gen, c =>
        {
            var (rows, inF, outF, lead, hasBias, relu, vx, vw, seed) = c;
            var x = TensorGen.Make([.. lead, rows, inF], vx, seed, dtype, dev);
            var w = TensorGen.Make([outF, inF], vw, seed + 1, dtype, dev);
            var bias = hasBias ? TensorGen.Make([outF], TensorGen.ViewKind.Contiguous, seed + 2, dtype, dev) : null;
            var y = Tensor.Linear(x, w, bias, relu);
            Assert.Equal(new Shape([.. lead, rows, outF]), y.Shape);
            int n = new Shape([.. lead, rows]).Numel;
            var xe = x.ToDoubleArray(); var wt = w.T.ToDoubleArray(); var be = bias?.ToDoubleArray();
            var ab = Reference.Gemm(n, outF, inF, xe, wt);
            var abs = Reference.Gemm(n, outF, inF, xe.Select(Math.Abs).ToArray(), wt.Select(Math.Abs).ToArray());
            var expected = ab.Select((v, i) => v + (be is null ? 0 : be[i % outF])).Select(v => relu ? Math.Max(v, 0) : v).ToArray();
            var bound = abs.Select((v, i) => v + (be is null ? 0 : Math.Abs(be[i % outF]))).ToArray();
            double u = dtype == DType.Float32 ? Math.Pow(2, -24) : Math.Pow(2, -53);
            CheckGemm(expected, bound, y.ToDoubleArray(), inF, u, $"linear {dtype} [{string.Join(",", lead)},{rows},{inF}] -> {outF} bias {hasBias} relu {relu}");
        }, maxTest: 40);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Linear_gradients_match_finite_differences(bool relu)
    {
        var g = new Generator(13);
        var x = Tensor.Rand(new Shape(2, 5, 7), g, -1, 1, DType.Float64);
        var w = Tensor.Rand(new Shape(6, 7), g, -1, 1, DType.Float64);
        var b = Tensor.Rand(new Shape(6), g, -1, 1, DType.Float64);
        var r = GradCheck.Run(t => Tensor.Linear(t[0], t[1], t[2], relu), [x, w, b]);
        Assert.True(r.Passed, r.ToString());
        var r2 = GradCheck.Run(t => Tensor.Linear(t[0], t[1].T, null, relu), [x, w.T.Contiguous()]);
        Assert.True(r2.Passed, r2.ToString());
    }

    [Fact]
    public void Linear_rejects_bad_shapes()
    {
        var x = Tensor.Zeros(3, 4);
        Assert.Equal("weight", Assert.Throws<ShapeMismatchException>(() => Tensor.Linear(x, Tensor.Zeros(5, 3))).ParamName);
        Assert.Equal("bias", Assert.Throws<ShapeMismatchException>(() => Tensor.Linear(x, Tensor.Zeros(5, 4), Tensor.Zeros(4))).ParamName);
        Assert.Equal("x", Assert.Throws<ShapeMismatchException>(() => Tensor.Linear(Tensor.Scalar(1), Tensor.Zeros(5, 1))).ParamName);
    }

    [Fact]
    public void MatMul_rejects_mismatched_inner_dimensions_and_bool_dtypes()
    {
        var ex = Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(2, 3).MatMul(Tensor.Zeros(4, 2)));
        Assert.Contains("inner dimensions", ex.Message);
        Assert.Throws<NotSupportedException>(() => Tensor.Zeros(new Shape(2, 2), DType.Bool).MatMul(Tensor.Zeros(new Shape(2, 2), DType.Bool)));
    }
}
