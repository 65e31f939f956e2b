using Kiln.Backends;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>The skinny-product kernel (m = 1..8, both weight layouts, every vector width, half weights) and the matmul/linear shapes routed to it, against Reference.Gemm.</summary>
public class MatVecTests
{
    // Extents: 0, 1, odd sizes that leave vector and pair tails, sizes past a panel (64 .. 4096 columns) and the parallel threshold.
    static FsCheck.Gen<int> Extent => G.Frequency((1, G.Constant(0)), (2, G.Constant(1)), (10, G.Choose(2, 40)), (3, G.Choose(41, 300)), (1, G.Choose(600, 1500)));

    public static IEnumerable<object[]> KernelCases =>
        from kern in new[] { GemmKernel.Vector512, GemmKernel.Vector256, GemmKernel.Scalar }
        where kern != GemmKernel.Vector512 || System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated
        where kern != GemmKernel.Vector256 || System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated
        from w in new[] { "float", "double", "bfloat16", "float16" }
        select new object[] { kern, w };

    public static IEnumerable<object[]> HalfKernelCases => KernelCases.Where(c => (string)c[1] is "bfloat16" or "float16");

    // The rounding bound of a float32/float64 dot product of length k: (k + 2) u sum |x||w| (+ the bias's rounding).
    static void CheckBound(double[] expected, double[] absProducts, double[] actual, int k, double u, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = (k + 2) * u * absProducts[i] + 1e-300;
            Assert.True(Math.Abs(actual[i] - expected[i]) <= tol, $"{what}[{i}]: got {actual[i]:R}, expected {expected[i]:R}, tol {tol:G3}");
        }
    }

    [Theory, MemberData(nameof(KernelCases))]
    public void MatVec_matches_reference_for_both_layouts_strides_and_epilogues(GemmKernel kernel, string weights)
    {
        var gen = from m in G.Choose(0, MatVec.MaxRows) from n in Extent from k in Extent
                  from kn in G.Elements(true, false) from xLayout in G.Choose(0, 2) from pad in G.Choose(0, 3)
                  from epi in G.Choose(0, 3) from seed in TensorGen.Seed
                  select (m, n, k, kn, xLayout, pad, epi, seed);
        Props.Check(gen, c =>
        {
            switch (weights)
            {
                case "float": Case<float, float>(kernel, c, v => (float)v, v => v, Math.Pow(2, -24)); break;
                case "double": Case<double, double>(kernel, c, v => v, v => v, Math.Pow(2, -53)); break;
                case "bfloat16": Case<float, ushort>(kernel, c, v => BFloat16Bits.FromFloat((float)v), v => BFloat16Bits.ToFloat(v), Math.Pow(2, -24)); break;
                default: Case<float, Half>(kernel, c, v => (Half)v, v => (double)v, Math.Pow(2, -24)); break;
            }
        }, maxTest: 30);
    }

    // xLayout: 0 row-major, 1 column-major (a transposed X), 2 rows and columns strided; pad widens W's leading dimension;
    // epi: bit 0 adds a bias, bit 1 applies ReLU.
    static void Case<T, TW>(GemmKernel kernel, (int M, int N, int K, bool Kn, int XLayout, int Pad, int Epi, int Seed) c,
        Func<double, TW> toW, Func<TW, double> fromW, double u) where T : unmanaged, System.Numerics.IFloatingPoint<T> where TW : unmanaged
    {
        var (m, n, k, kn, xLayout, pad, epi, seed) = c;
        var rnd = new Random(seed);
        T R() => T.CreateTruncating(rnd.NextDouble() * 4 - 2);
        var (xRs, xCs, xLen) = xLayout switch { 0 => (k, 1, m * k), 1 => (1, m, m * k), _ => (2 * k + 1, 2, m * (2 * k + 1)) };
        int xOff = rnd.Next(3), wOff = rnd.Next(3), yOff = rnd.Next(3), ldy = n + rnd.Next(3);
        var x = Enumerable.Range(0, xOff + xLen).Select(_ => R()).ToArray();
        int ldw = (kn ? n : k) + pad;
        var w = Enumerable.Range(0, wOff + (kn ? k : n) * ldw).Select(_ => toW(rnd.NextDouble() * 4 - 2)).ToArray();
        var y = Enumerable.Range(0, yOff + m * ldy + 2).Select(_ => R()).ToArray();
        var y0 = (T[])y.Clone();
        var bias = (epi & 1) != 0 ? Enumerable.Range(0, n + 2).Select(_ => R()).ToArray() : null;
        bool relu = (epi & 2) != 0;
        var (wRs, wCs) = kn ? (ldw, 1) : (1, ldw);
        MatVec.Run(m, n, k, x, xOff, xRs, xCs, w, wOff, wRs, wCs, y, yOff, ldy, bias, 2, relu, kernel);

        var xd = new double[m * k]; var wd = new double[k * n];
        for (int i = 0; i < m; i++) for (int p = 0; p < k; p++) xd[i * k + p] = double.CreateTruncating(x[xOff + i * xRs + p * xCs]);
        for (int p = 0; p < k; p++) for (int j = 0; j < n; j++) wd[p * n + j] = fromW(w[wOff + p * wRs + j * wCs]);
        var ab = Reference.Gemm(m, n, k, xd, wd);
        var abs = Reference.Gemm(m, n, k, xd.Select(Math.Abs).ToArray(), wd.Select(Math.Abs).ToArray());
        double Bias(int i) => bias is null ? 0 : double.CreateTruncating(bias[2 + i % Math.Max(n, 1)]);
        var expected = ab.Select((v, i) => v + Bias(i)).Select(v => relu ? Math.Max(v, 0) : v).ToArray();
        var bound = abs.Select((v, i) => v + Math.Abs(Bias(i))).ToArray();
        var got = new double[m * n];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) got[i * n + j] = double.CreateTruncating(y[yOff + i * ldy + j]);
        CheckBound(expected, bound, got, k, u, $"{kernel} {typeof(TW).Name} {m}x{n}x{k} {(kn ? "[k,n]" : "[n,k]")} x layout {xLayout} pad {pad} epilogue {epi}");
        // Y's padding and surroundings are never written.
        for (int i = 0; i < y.Length; i++)
        {
            int r = (i - yOff) / Math.Max(ldy, 1), col = i - yOff - r * ldy;
            if (!(i >= yOff && r < m && col < n)) Assert.Equal(y0[i], y[i]);
        }
    }

    // k 100: a [n, k] weight's short rows go eight output columns at a time, split on group boundaries.
    // m = 1 in [n, k] takes rows a quarter of each thread's block apart; in [k, n] the panel widths follow the threads.
    [Theory]
    [InlineData(true, 777, 3)]
    [InlineData(false, 777, 3)]
    [InlineData(false, 100, 3)]
    [InlineData(true, 100, 3)]
    [InlineData(false, 777, 1)]
    [InlineData(true, 777, 1)]
    public void MatVec_results_do_not_depend_on_threads(bool kn, int k, int m)
    {
        int n = 2051;
        var rnd = new Random(4);
        var x = Enumerable.Range(0, m * k).Select(_ => (float)rnd.NextDouble()).ToArray();
        var w = Enumerable.Range(0, n * k).Select(_ => (float)rnd.NextDouble()).ToArray();
        var (wRs, wCs) = kn ? (n, 1) : (1, k);
        var y1 = new float[m * n]; var y2 = new float[m * n];
        MatVec.Run(m, n, k, x, 0, k, 1, w, 0, wRs, wCs, y1, 0, n, threads: 1);
        MatVec.Run(m, n, k, x, 0, k, 1, w, 0, wRs, wCs, y2, 0, n, threads: 2);
        Assert.Equal(y1, y2);
    }

    [Fact]
    public void MatVec_widens_every_half_value_exactly()
    {
        // Every float16 and bfloat16 bit pattern (subnormals, infinities, NaNs) times 1 through the vector and scalar widening.
        var bits = Enumerable.Range(0, 1 << 16).Select(i => (ushort)i).ToArray();
        var halves = bits.Select(b => BitConverter.UInt16BitsToHalf(b)).ToArray();
        foreach (var kernel in KernelCases.Select(o => (GemmKernel)o[0]).Distinct())
        {
            var y = new float[bits.Length];
            MatVec.Run(1, bits.Length, 1, [1f], 0, 1, 1, halves, 0, bits.Length, 1, y, 0, bits.Length, kernel: kernel);
            for (int i = 0; i < bits.Length; i++)
                Assert.True(y[i].Equals((float)halves[i]), $"{kernel} float16 0x{i:X4}: got {y[i]:R}, expected {(float)halves[i]:R}");
            MatVec.Run(1, bits.Length, 1, [1f], 0, 1, 1, bits, 0, bits.Length, 1, y, 0, bits.Length, kernel: kernel);
            for (int i = 0; i < bits.Length; i++)
                Assert.True(y[i].Equals(BFloat16Bits.ToFloat(bits[i])), $"{kernel} bfloat16 0x{i:X4}: got {y[i]:R}");
        }
    }

    // The [n, k] kernel for short rows widens half weights from 32-bit pairs (even and odd elements apart): every bit
    // pattern at every position of a 64-wide row, the other weights 0 and X all ones, comes out as its float32 value.
    [Fact]
    public void MatVec_widens_every_half_value_exactly_in_short_rows()
    {
        const int k = 64, n = 1 << 16;
        var ones = Enumerable.Repeat(1f, k).ToArray();
        foreach (var kernel in KernelCases.Select(o => (GemmKernel)o[0]).Distinct())
        {
            var bf = new ushort[n * k]; var fh = new Half[n * k];
            for (int j = 0; j < n; j++) { bf[j * k + j % k] = (ushort)j; fh[j * k + j % k] = BitConverter.UInt16BitsToHalf((ushort)j); }
            var y = new float[n];
            MatVec.Run(1, n, k, ones, 0, k, 1, bf, 0, 1, k, y, 0, n, kernel: kernel);
            for (int j = 0; j < n; j++) Assert.True(y[j].Equals(BFloat16Bits.ToFloat((ushort)j)), $"{kernel} bfloat16 0x{j:X4} at {j % k}: got {y[j]:R}");
            MatVec.Run(1, n, k, ones, 0, k, 1, fh, 0, 1, k, y, 0, n, kernel: kernel);
            for (int j = 0; j < n; j++) Assert.True(y[j].Equals((float)fh[j * k + j % k]), $"{kernel} float16 0x{j:X4} at {j % k}: got {y[j]:R}");
        }
    }

    // Half weights give the bits of their float32 widening (the decoder's documented guarantee), in both layouts, every
    // row count and row length, short rows (eight columns at a time, even and odd elements apart) and long.
    [Theory, MemberData(nameof(HalfKernelCases))]
    public void Half_weights_give_the_bits_of_their_float32_widening(GemmKernel kernel, string weights)
    {
        var gen = from m in G.Choose(1, MatVec.MaxRows) from n in G.Choose(0, 40) from k in G.Choose(0, 600)
                  from kn in G.Elements(true, false) from seed in TensorGen.Seed select (m, n, k, kn, seed);
        Props.Check(gen, c =>
        {
            var (m, n, k, kn, seed) = c;
            var rnd = new Random(seed);
            var x = Enumerable.Range(0, m * k).Select(_ => (float)(rnd.NextDouble() * 4 - 2)).ToArray();
            var wide = Enumerable.Range(0, n * k).Select(_ => (float)(rnd.NextDouble() * 4 - 2)).ToArray();
            var (wRs, wCs) = kn ? (n, 1) : (1, k);
            var (y, yw) = (new float[m * n], new float[m * n]);
            if (weights == "bfloat16")
            {
                var h = wide.Select(BFloat16Bits.FromFloat).ToArray();
                MatVec.Run(m, n, k, x, 0, k, 1, h, 0, wRs, wCs, y, 0, n, kernel: kernel);
                wide = h.Select(BFloat16Bits.ToFloat).ToArray();
            }
            else
            {
                var h = wide.Select(v => (Half)v).ToArray();
                MatVec.Run(m, n, k, x, 0, k, 1, h, 0, wRs, wCs, y, 0, n, kernel: kernel);
                wide = h.Select(v => (float)v).ToArray();
            }
            MatVec.Run(m, n, k, x, 0, k, 1, wide, 0, wRs, wCs, yw, 0, n, kernel: kernel);
            Assert.True(y.Select(BitConverter.SingleToInt32Bits).SequenceEqual(yw.Select(BitConverter.SingleToInt32Bits)),
                $"{kernel} {weights} {m}x{n}x{k} {(kn ? "[k,n]" : "[n,k]")}: half and widened results differ");
        }, maxTest: 40);
    }

    [Fact]
    public void MatVec_rejects_bad_arguments()
    {
        var f = new float[64];
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => MatVec.Run(9, 2, 2, f, 0, 2, 1, f, 0, 2, 1, f, 0, 2));
        Assert.Contains("9", e.Message);
        var s = Assert.Throws<ArgumentException>(() => MatVec.Run(1, 2, 2, f, 0, 2, 1, f, 0, 4, 2, f, 0, 2));
        Assert.Contains("(4, 2)", s.Message);
        Assert.Throws<NotSupportedException>(() => MatVec.Run(1, 2, 2, new double[4], 0, 2, 1, new Half[4], 0, 2, 1, new double[4], 0, 2));
    }

    public static IEnumerable<object[]> DeviceDTypes =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    [Theory, MemberData(nameof(DeviceDTypes))]
    public void Skinny_matmul_and_linear_match_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from m in G.Choose(0, 9) from n in Extent from k in Extent
                  from batch in G.Elements(Array.Empty<int>(), [2], [1, 3])
                  from linear in G.Elements(true, false) from transposed in G.Elements(true, false)
                  from vx in TensorGen.View from seed in TensorGen.Seed
                  select (m, n, k, batch, linear, transposed, vx, seed);
        Props.Check(dev, gen, c =>
        {
            var (m, n, k, batch, linear, transposed, vx, seed) = c;
            var x = TensorGen.Make([.. batch, m, k], vx, seed, dtype, dev);
            // The weight in both stored layouts: [k, n] or [n, k] (viewed as its transpose for matmul, as is for linear).
            var stored = TensorGen.Make(transposed ? [n, k] : [k, n], TensorGen.ViewKind.Contiguous, seed + 1, dtype, dev);
            var wKn = transposed ? stored.T : stored;
            var bias = linear && seed % 2 == 0 ? TensorGen.Make([n], TensorGen.ViewKind.Contiguous, seed + 2, dtype, dev) : null;
            var y = linear ? Tensor.Linear(x, wKn.T, bias) : x.MatMul(wKn);
            Assert.Equal(new Shape([.. batch, m, n]), y.Shape);
            int rows = new Shape([.. batch, m]).Numel;
            var xe = x.ToDoubleArray(); var we = wKn.ToDoubleArray(); var be = bias?.ToDoubleArray();
            var ab = Reference.Gemm(rows, n, k, xe, we);
            var abs = Reference.Gemm(rows, n, k, xe.Select(Math.Abs).ToArray(), we.Select(Math.Abs).ToArray());
            var expected = ab.Select((v, i) => v + (be is null ? 0 : be[i % n])).ToArray();
            var bound = abs.Select((v, i) => v + (be is null ? 0 : Math.Abs(be[i % n]))).ToArray();
            double u = dtype == DType.Float32 ? Math.Pow(2, -24) : Math.Pow(2, -53);
            CheckBound(expected, bound, y.ToDoubleArray(), k, u, $"{(linear ? "linear" : "matmul")} {dtype} [{string.Join(",", batch)},{m},{k}] x {(transposed ? "[n,k]^T" : "[k,n]")} {n} {vx}");
        }, maxTest: 30);
    }

    public static IEnumerable<object[]> HalfCases =>
        from d in Devices.All from h in new[] { DType.BFloat16, DType.Float16 } from halfX in new[] { true, false }
        select new object[] { d.ToString(), h, halfX };

    // A half weight times x in Float32 (y Float32) or in the weight's dtype (y in it, rounded once): within the float32
    // sum bound of the float64 product of the stored values, plus the half format's rounding of a half y.
    [Theory, MemberData(nameof(HalfCases))]
    public void Half_matmul_and_linear_match_reference(string device, DType half, bool halfX)
    {
        var dev = Devices.Parse(device);
        var gen = from m in G.Frequency((3, G.Choose(0, 9)), (1, G.Choose(10, 40))) from n in Extent from k in Extent
                  from batch in G.Elements(Array.Empty<int>(), [2])
                  from linear in G.Elements(true, false) from transposed in G.Elements(true, false)
                  from vx in TensorGen.View from seed in TensorGen.Seed
                  select (m, n, k, batch, linear, transposed, vx, seed);
        Props.Check(dev, gen, c =>
        {
            var (m, n, k, batch, linear, transposed, vx, seed) = c;
            var x = TensorGen.Make([.. batch, m, k], vx, seed, halfX ? half : DType.Float32, dev);
            var stored = TensorGen.Make(transposed ? [n, k] : [k, n], TensorGen.ViewKind.Contiguous, seed + 1, half, dev);
            var wKn = transposed ? stored.T : stored;
            var bias = linear && seed % 2 == 0 ? TensorGen.Make([n], TensorGen.ViewKind.Contiguous, seed + 2, half, dev) : null;
            var y = linear ? Tensor.Linear(x, wKn.T, bias) : x.MatMul(wKn);
            var outType = halfX ? half : DType.Float32;
            Assert.Equal(outType, y.DType);
            Assert.Equal(new Shape([.. batch, m, n]), y.Shape);
            int rows = new Shape([.. batch, m]).Numel;
            var xe = x.ToDoubleArray(); var we = wKn.ToDoubleArray(); var be = bias?.ToDoubleArray();
            var ab = Reference.Gemm(rows, n, k, xe, we);
            var abs = Reference.Gemm(rows, n, k, xe.Select(Math.Abs).ToArray(), we.Select(Math.Abs).ToArray());
            var expected = ab.Select((v, i) => v + (be is null ? 0 : be[i % n])).ToArray();
            var got = y.ToDoubleArray();
            double u = Math.Pow(2, -24), uh = outType == DType.Float32 ? 0 : half == DType.BFloat16 ? Math.Pow(2, -8) : Math.Pow(2, -11);
            double tiny = outType == DType.Float16 ? Math.Pow(2, -25) : 0;
            for (int i = 0; i < expected.Length; i++)
            {
                double sum = (k + 2) * u * (abs[i] + (be is null ? 0 : Math.Abs(be[i % n])));
                double tol = sum * (1 + uh) + uh * Math.Abs(expected[i]) + tiny + 1e-300;
                Assert.True(Math.Abs(got[i] - expected[i]) <= tol,
                    $"{(linear ? "linear" : "matmul")} {x.DType} x {half} [{string.Join(",", batch)},{m},{k}] x {n} {(transposed ? "[n,k]" : "[k,n]")}[{i}]: got {got[i]:R}, expected {expected[i]:R}, tol {tol:G3}");
            }
        }, maxTest: 20);
    }

    [Theory]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float16)]
    public void Half_budget_is_the_float32_sum_bound_plus_one_half_rounding(DType half)
    {
        // A sum of n = 10 terms with sum|terms| = 4 and reference 3: the budget is 10 u32 4 (1 + uh) + uh 3 + half the smallest subnormal.
        var tol = Kiln.Ops.Tolerance.Bound();
        double uh = Kiln.Ops.CheckResult.UnitRoundoff(half), u32 = Math.Pow(2, -24), sub = Kiln.Ops.CheckResult.UlpOf(0, half) / 2;
        double budget = 10 * u32 * 4 * (1 + uh) + uh * 3 + sub;
        Assert.True(tol.Check([3.0], [3.0 + budget * 0.999], half, null, "inside", [4.0], 10).Pass);
        Assert.False(tol.Check([3.0], [3.0 + budget * 1.001], half, null, "outside", [4.0], 10).Pass);
        // Float32 keeps the plain bound n u32 sum|terms|.
        Assert.False(tol.Check([3.0], [3.0 + 10 * u32 * 4 * 1.001], DType.Float32, null, "float32", [4.0], 10).Pass);
        Assert.Contains("u32", tol.Describe(half));
    }

    public static IEnumerable<object[]> HalfGradCases =>
        from h in new[] { DType.BFloat16, DType.Float16 } from halfX in new[] { true, false } from relu in new[] { true, false }
        select new object[] { h, halfX, relu };

    // Gradients of half matmul and linear arrive in each input's dtype (PyTorch's rule): each is the float32 product of
    // the stored operands, rounded once to that dtype, so it is checked against the float64 product of the same values.
    [Theory, MemberData(nameof(HalfGradCases))]
    public void Half_matmul_and_linear_gradients_come_in_each_inputs_dtype(DType half, bool halfX, bool relu)
    {
        var g = new Generator(21);
        var xType = halfX ? half : DType.Float32;
        var x = Tensor.Rand(new Shape(3, 7), g, -1, 1, DType.Float64).To(xType).RequiresGrad_();
        var w = Tensor.Rand(new Shape(5, 7), g, -1, 1, DType.Float64).To(half).RequiresGrad_();
        var b = Tensor.Rand(new Shape(5), g, -1, 1, DType.Float64).To(half).RequiresGrad_();
        var y = Tensor.Linear(x, w, b, relu);
        var seed = Tensor.Rand(y.Shape, g, -1, 1, DType.Float64).To(y.DType);
        y.Backward(seed);
        Assert.Equal(xType, x.Grad!.DType);
        Assert.Equal(half, w.Grad!.DType);
        Assert.Equal(half, b.Grad!.DType);
        // The float64 gradients of the stored values: gz = seed masked by y > 0 under ReLU, gx = gz w, gw = gz^T x, gb = sum of gz's rows.
        double[] xd = x.ToDoubleArray(), wd = w.ToDoubleArray(), sd = seed.ToDoubleArray(), yd = y.ToDoubleArray();
        var gz = sd.Select((v, i) => relu && yd[i] <= 0 ? 0 : v).ToArray();
        var gx = Reference.Gemm(3, 7, 5, gz, wd);
        var gzT = Enumerable.Range(0, 5 * 3).Select(i => gz[i % 3 * 5 + i / 3]).ToArray();  // [3, 5] -> [5, 3]
        var gw = Reference.Gemm(5, 7, 3, gzT, xd);
        var gb = Enumerable.Range(0, 5).Select(j => Enumerable.Range(0, 3).Sum(i => gz[i * 5 + j])).ToArray();
        void Near(double[] expected, Tensor actual, int terms, string what)
        {
            double uh = Kiln.Ops.CheckResult.UnitRoundoff(actual.DType), u = Math.Pow(2, -24);
            var a = actual.ToDoubleArray();
            for (int i = 0; i < expected.Length; i++)
            {
                double tol = (terms + 2) * u * terms + uh * Math.Abs(expected[i]) * 1.0001 + 1e-7;
                Assert.True(Math.Abs(a[i] - expected[i]) <= tol, $"{what}[{i}] ({actual.DType}): got {a[i]:R}, expected {expected[i]:R}, tol {tol:G3}");
            }
        }
        Near(gx, x.Grad!, 5, "x.grad");
        Near(gw, w.Grad!, 3, "w.grad");
        Near(gb, b.Grad!, 3, "b.grad");

        // matmul: x [3, 7] times w^T viewed [7, 5], the same gradients without the bias and mask.
        var x2 = x.Detach().RequiresGrad_(); var w2 = w.Detach().RequiresGrad_();
        var y2 = x2.MatMul(w2.T);
        var seed2 = Tensor.Rand(y2.Shape, g, -1, 1, DType.Float64).To(y2.DType);
        y2.Backward(seed2);
        Assert.Equal(xType, x2.Grad!.DType);
        Assert.Equal(half, w2.Grad!.DType);
        var s2 = seed2.ToDoubleArray();
        var s2T = Enumerable.Range(0, 5 * 3).Select(i => s2[i % 3 * 5 + i / 3]).ToArray();
        Near(Reference.Gemm(3, 7, 5, s2, wd), x2.Grad!, 5, "matmul x.grad");
        Near(Reference.Gemm(5, 7, 3, s2T, xd), w2.Grad!, 3, "matmul w.grad");
    }
}
