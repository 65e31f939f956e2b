using Kiln.Kernels;
using Kiln.Kernels.Cpu;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>Fused scaled-dot-product attention against the unfused float64 reference, its gradients, and its argument checks.</summary>
public class AttentionTests
{
    // Sequence lengths cross the kernel's 64-row tiles; 0 and 1 occur.
    static FsCheck.Gen<int> Len => G.Frequency((1, G.Constant(0)), (2, G.Constant(1)), (8, G.Choose(2, 40)), (3, G.Choose(60, 140)));
    static FsCheck.Gen<int> Width => G.Frequency((1, G.Constant(1)), (6, G.Choose(2, 40)), (1, G.Constant(64)));

    public static IEnumerable<object[]> Cases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    [Theory, MemberData(nameof(Cases))]
    public void Fused_attention_matches_unfused_float64_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from tq in Len from tk in Len from d in Width from dv in Width
                  from batch in G.Elements(Array.Empty<int>(), [1], [3], [2, 3])
                  from shareKv in G.Elements(true, false) from causal in G.Elements(true, false)
                  from scale in G.Elements<double?>(null, 0.3, 1.0)
                  from view in TensorGen.View from kvView in TensorGen.View from seed in TensorGen.Seed
                  select (tq, tk, d, dv, batch, shareKv, causal, scale, (view, kvView), seed);
        Props.Check(gen, c =>
        {
            var (tq, tk, d, dv, batch, shareKv, causal, scale, (view, kvView), seed) = c;
            // k and v may be shared by every batch entry (broadcast); every input may be a strided view.
            int[] kvBatch = shareKv && batch.Length > 0 ? [.. batch.Select(_ => 1)] : batch;
            var q = TensorGen.Make([.. batch, tq, d], view, seed, dtype, dev, -1, 1);
            var k = TensorGen.Make([.. kvBatch, tk, d], kvView, seed + 1, dtype, dev, -1, 1);
            var v = TensorGen.Make([.. kvBatch, tk, dv], kvView, seed + 2, dtype, dev, -1, 1);
            var y = Tensor.ScaledDotProductAttention(q, k, v, causal, scale);
            Assert.Equal(new Shape([.. batch, tq, dv]), y.Shape);
            int nb = new Shape(batch).Numel;
            var qs = q.ToDoubleArray();
            var ks = k.BroadcastTo(new Shape([.. batch, tk, d])).ToDoubleArray();
            var vs = v.BroadcastTo(new Shape([.. batch, tk, dv])).ToDoubleArray();
            var got = y.ToDoubleArray();
            double s = scale ?? (d == 0 ? 1 : 1 / Math.Sqrt(d));
            // Rounding bound: scores carry about d ulps, the softmax sum and the weighted sum about tk more, scaled by |v| <= 1
            // and by the exp's sensitivity to absolute score error (|score| <= s d).
            double u = dtype == DType.Float32 ? Math.Pow(2, -24) : Math.Pow(2, -53);
            double tol = (d + tk + 8) * u * (2 + s * d);
            for (int t = 0; t < nb; t++)
            {
                var e = Reference.Attention(tq, tk, d, dv, qs.AsSpan(t * tq * d, tq * d), ks.AsSpan(t * tk * d, tk * d), vs.AsSpan(t * tk * dv, tk * dv), causal, s);
                Close.Check(e, got.AsSpan(t * tq * dv, tq * dv), 0, tol, $"attention {dtype} batch {t} tq {tq} tk {tk} d {d} dv {dv} causal {causal}");
            }
        });
    }

    public static IEnumerable<object[]> KernelCases =>
        from kern in new[] { GemmKernel.Vector512, GemmKernel.Vector256, GemmKernel.Scalar }
        where kern != GemmKernel.Vector512 || System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated
        where kern != GemmKernel.Vector256 || System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated
        from dt in new[] { DType.Float32, DType.Float64 }
        select new object[] { kern, dt };

    // The CPU kernel on each micro-kernel (Vector512: the register-tiled forward; the others: tiles of Gemm products), with
    // lengths across its 16/32/64-query and 64-key tiles and widths across its 4-vector panels, against the float64
    // reference for y and its gradients, and a direct float64 log-sum-exp for lse.
    // A decoding step's keys and values are the committed prefix of a KV cache's larger buffer: the CPU backend reads
    // them in place (each head's rows dense, heads a buffer apart) for up to FewRows queries per head, with the bits of
    // the contiguous copy; more queries take the copy.
    [Theory]
    [InlineData(1, false)]
    [InlineData(Attention.FewRows, true)]
    [InlineData(Attention.FewRows + 3, true)]
    public void Attention_reads_a_cache_prefix_in_place_with_the_bits_of_a_copy(int tq, bool causal)
    {
        var g = new Generator(21);
        var keys = Tensor.Randn([1, 3, 40, 16], g);
        var values = Tensor.Randn([1, 3, 40, 24], g);
        var q = Tensor.Randn([1, 3, tq, 16], g);
        foreach (int len in new[] { 0, 1, 17, 40 })
        {
            var (k, v) = (keys.Narrow(2, 0, len), values.Narrow(2, 0, len));
            Assert.True(len is 0 or 40 || !k.IsContiguous);
            var expected = Tensor.ScaledDotProductAttention(q, k.Contiguous(), v.Contiguous(), causal).ToArray<float>();
            Assert.Equal(expected, Tensor.ScaledDotProductAttention(q, k, v, causal).ToArray<float>());
        }
    }

    [Fact]
    public void Attention_kernel_names_strided_keys_it_cannot_tile()
    {
        int tq = Attention.FewRows + 1, d = 4;
        var q = new float[2 * tq * d]; var kv = new float[2 * 10 * d]; var y = new float[2 * tq * d]; var lse = new float[2 * tq];
        var e = Assert.Throws<ArgumentException>(() => Attention.Forward(2, tq, 3, d, d, q, 0, kv, 0, kv, 0, false, 1f, y, 0, lse, 0, kBatchStride: 10 * d));
        Assert.Equal("kBatchStride", e.ParamName);
        Assert.Contains($"got {tq}", e.Message);
        // The few-rows path reads them.
        Attention.Forward(2, Attention.FewRows, 3, d, d, q, 0, kv, 0, kv, 0, false, 1f, y, 0, lse, 0, kBatchStride: 10 * d, vBatchStride: 10 * d);
    }

    [Theory, MemberData(nameof(KernelCases))]
    public void Cpu_kernel_forward_and_backward_match_reference_on_every_micro_kernel(GemmKernel kernel, DType dtype)
    {
        var gen = from tq in Len from tk in Len
                  from d in G.Frequency((3, Width), (1, G.Elements(16, 32, 63, 65, 96, 128)))
                  from dv in G.Frequency((3, Width), (1, G.Elements(16, 32, 63, 65, 96, 128)))
                  from batch in G.Choose(1, 3) from causal in G.Elements(true, false) from seed in TensorGen.Seed
                  select (tq, tk, d, dv, batch, causal, seed);
        Props.Check(gen, c =>
        {
            if (dtype == DType.Float32) KernelCase<float>(kernel, c, Math.Pow(2, -24));
            else KernelCase<double>(kernel, c, Math.Pow(2, -53));
        }, maxTest: 40);
    }

    static void KernelCase<T>(GemmKernel kernel, (int Tq, int Tk, int D, int Dv, int Batch, bool Causal, int Seed) c, double u)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var (tq, tk, d, dv, batch, causal, seed) = c;
        var rnd = new Random(seed);
        // Offsets shift every operand off any alignment the kernel might assume; NaN around them catches stray reads.
        int off = rnd.Next(0, 5);
        double[] R(int n) => [.. Enumerable.Range(0, n).Select(_ => rnd.NextDouble() * 2 - 1)];
        var (qd, kd, vd, gyd) = (R(batch * tq * d), R(batch * tk * d), R(batch * tk * dv), R(batch * tq * dv));
        T[] Pad(double[] x) => [.. Enumerable.Repeat(T.NaN, off).Concat(x.Select(T.CreateTruncating))];
        T[] Out(int n) => Enumerable.Repeat(T.NaN, off + n).ToArray();
        var (y, lse, gq, gk, gv) = (Out(batch * tq * dv), Out(batch * tq), Out(batch * tq * d), Out(batch * tk * d), Out(batch * tk * dv));
        double s = 1 / Math.Sqrt(Math.Max(d, 1));
        var (q, k, v) = (Pad(qd), Pad(kd), Pad(vd));
        Kiln.Kernels.Cpu.Attention.Forward(batch, tq, tk, d, dv, q, off, k, off, v, off, causal, T.CreateTruncating(s), y, off, lse, off, kernel);
        Kiln.Kernels.Cpu.Attention.Backward(batch, tq, tk, d, dv, q, off, k, off, v, off, y, off, Pad(gyd), off, lse, off, causal, T.CreateTruncating(s),
            gq, off, gk, off, gv, off, kernel);
        // Rounding bound as in the forward test; the gradients sum over both lengths and both widths.
        double tol = (d + tk + 8) * u * (2 + s * d), gtol = (d + dv + tq + tk + 8) * u * 4 * (2 + s * d);
        string what = $"{kernel} {typeof(T).Name} (tq {tq} tk {tk} d {d} dv {dv} causal {causal})";
        void Check(ReadOnlySpan<double> expected, T[] got, int at, double bound, string name)
        {
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(double.CreateTruncating(got[at + i]) - expected[i]) <= bound * Math.Max(1, Math.Abs(expected[i])),
                    $"{what} {name}[{i}] = {got[at + i]}, expected {expected[i]}");
        }
        for (int b = 0; b < batch; b++)
        {
            var (qs, ks, vs, gys) = (qd[(b * tq * d)..((b + 1) * tq * d)], kd[(b * tk * d)..((b + 1) * tk * d)], vd[(b * tk * dv)..((b + 1) * tk * dv)], gyd[(b * tq * dv)..((b + 1) * tq * dv)]);
            var e = tk == 0 ? new double[tq * dv] : Reference.Attention(tq, tk, d, dv, qs, ks, vs, causal, s);
            Check(e, y, off + b * tq * dv, tol, "y");
            var lseRef = new double[tq];
            for (int i = 0; i < tq; i++)
            {
                int live = causal ? Math.Min(tk, i + 1) : tk;
                var sc = Enumerable.Range(0, live).Select(j => s * Enumerable.Range(0, d).Sum(p => qs[i * d + p] * ks[j * d + p])).ToArray();
                double m = live == 0 ? double.NegativeInfinity : sc.Max();
                lseRef[i] = live == 0 ? double.NegativeInfinity : m + Math.Log(sc.Sum(x => Math.Exp(x - m)));
                if (live == 0) Assert.True(T.IsNegativeInfinity(lse[off + b * tq + i]), $"{what} lse[{i}] = {lse[off + b * tq + i]}, expected -inf");
            }
            Check(lseRef.Select(x => double.IsNegativeInfinity(x) ? 0 : x).ToArray(), lse.Select(x => T.IsNegativeInfinity(x) ? T.Zero : x).ToArray(), off + b * tq, tol, "lse");
            if (tk == 0) continue;
            var (egq, egk, egv) = Reference.AttentionBackward(tq, tk, d, dv, qs, ks, vs, gys, causal, s);
            Check(egq, gq, off + b * tq * d, gtol, "gq");
            Check(egk, gk, off + b * tk * d, gtol, "gk");
            Check(egv, gv, off + b * tk * dv, gtol, "gv");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Gradients_match_finite_differences(bool causal)
    {
        var g = new Generator(7);
        // Two heads sharing k and v, Tq != Tk, and a query length that spans two tiles.
        var q = Tensor.Rand(new Shape(2, 70, 3), g, -1, 1, DType.Float64);
        var k = Tensor.Rand(new Shape(1, 66, 3), g, -1, 1, DType.Float64);
        var v = Tensor.Rand(new Shape(66, 2), g, -1, 1, DType.Float64);
        var r = GradCheck.Run(x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal), [q, k, v]);
        Assert.True(r.Passed, r.ToString());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Recorded_gradient_equals_fused_gradient_and_differentiates_again(bool causal)
    {
        var g = new Generator(9);
        var q = Tensor.Rand(new Shape(2, 9, 4), g, -1, 1, DType.Float64).RequiresGrad_();
        var k = Tensor.Rand(new Shape(2, 11, 4), g, -1, 1, DType.Float64).RequiresGrad_();
        var v = Tensor.Rand(new Shape(2, 11, 5), g, -1, 1, DType.Float64).RequiresGrad_();
        var w = Tensor.Rand(new Shape(2, 9, 5), g, -1, 1, DType.Float64);
        Tensor Loss() => (Tensor.ScaledDotProductAttention(q, k, v, causal, 0.7) * w).Sum();
        var fused = Autograd.Grad([Loss()], [q, k, v]);
        var recorded = Autograd.Grad([Loss()], [q, k, v], createGraph: true);
        for (int i = 0; i < 3; i++) Close.Check(fused[i], recorded[i], 1e-12, 1e-13, $"input {i}");
        // Second order: the Hessian-vector product in q matches central differences of the (fused) gradient.
        Tensor F(Tensor x) => (Tensor.ScaledDotProductAttention(x, k.Detach(), v.Detach(), causal, 0.7) * w).Sum();
        var dir = Tensor.Rand(q.Shape, g, -1, 1, DType.Float64);
        var hv = Autograd.Hvp(F, q.Detach(), dir);
        const double eps = 1e-5;
        Tensor GradAt(Tensor x) { var xi = x.Detach().RequiresGrad_(); return Autograd.Grad(F(xi), xi); }
        var numeric = (GradAt(q.Detach() + dir * eps) - GradAt(q.Detach() - dir * eps)) / (2 * eps);
        Close.Check(numeric, hv, 1e-5, 1e-7, "hessian-vector product");
    }

    public static IEnumerable<object[]> DeviceCausal => from d in Devices.All from c in new[] { false, true } select new object[] { d.ToString(), c };

    [Theory, MemberData(nameof(DeviceCausal))]
    public void Fused_backward_on_every_device_matches_the_cpu(string device, bool causal)
    {
        // The CPU's fused gradient is checked against finite differences above; here each device's kernels must agree with it.
        var dev = Devices.Parse(device);
        var g = new Generator(31);
        var q = Tensor.Rand(new Shape(3, 7, 5), g, -1, 1, DType.Float64);
        var k = Tensor.Rand(new Shape(3, 9, 5), g, -1, 1, DType.Float64);
        var v = Tensor.Rand(new Shape(3, 9, 6), g, -1, 1, DType.Float64);
        var w = Tensor.Rand(new Shape(3, 7, 6), g, -1, 1, DType.Float64);
        // Contiguous views that start past their buffer's first element: a kernel that ignores offsets reads the wrong rows.
        static Tensor Shifted(Tensor t) => Tensor.Concat([t.Narrow(0, 0, 1), t], 0).Narrow(0, 1, t.Shape[0]);
        Tensor[] Grads(Device d, bool shifted)
        {
            Tensor On(Tensor t) => shifted ? Shifted(t.To(d)) : t.To(d);
            var xs = new[] { q, k, v }.Select(t => On(t).Detach().RequiresGrad_()).ToArray();
            var y = Tensor.ScaledDotProductAttention(xs[0], xs[1], xs[2], causal, 0.7);
            return [y, .. Autograd.Grad([(y * On(w)).Sum()], xs)];
        }
        var cpu = Grads(Device.Cpu, false);
        foreach (bool shifted in new[] { false, true })
        {
            var other = Grads(dev, shifted);
            for (int i = 0; i < cpu.Length; i++) Close.Check(cpu[i], other[i].To(Device.Cpu), 1e-12, 1e-12, (i == 0 ? "y" : $"grad {i}") + (shifted ? " of offset views" : ""));
        }
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Fused_linear_matches_matmul_bias_relu_on_every_device(string device)
    {
        var dev = Devices.Parse(device);
        var g = new Generator(5);
        var x = Tensor.Rand(new Shape(2, 5, 7), g, -1, 1, DType.Float64).To(dev);
        var w = Tensor.Rand(new Shape(4, 7), g, -1, 1, DType.Float64).To(dev);
        var b = Tensor.Rand(new Shape(4), g, -1, 1, DType.Float64).To(dev);
        var expected = (x.MatMul(w.T) + b).Relu();
        Close.Check(expected.To(Device.Cpu), Tensor.Linear(x, w, b, relu: true).To(Device.Cpu), 1e-13, 1e-14, "linear");
        Close.Check(x.MatMul(w.T).To(Device.Cpu), Tensor.Linear(x, w).To(Device.Cpu), 1e-13, 1e-14, "linear without bias");
    }

    [Fact]
    public void Causal_attention_of_the_first_query_returns_the_first_value_row()
    {
        var q = Tensor.FromArray(new[] { 1f, 2f, 3f, 4f }, new Shape(2, 2));
        var k = Tensor.FromArray(new[] { 5f, -1f, 0.5f, 2f, 9f, 9f }, new Shape(3, 2));
        var v = Tensor.FromArray(new[] { 10f, 20f, 30f }, new Shape(3, 1));
        var y = Tensor.ScaledDotProductAttention(q, k, v, causal: true).ToDoubleArray();
        Assert.Equal(10.0, y[0], 1e-5);
        Assert.InRange(y[1], 10.0, 20.0);
    }

    [Fact]
    public void Bad_arguments_name_the_argument()
    {
        var q = Tensor.Zeros(2, 4, 8);
        Assert.Equal("k", Assert.Throws<ShapeMismatchException>(() => Tensor.ScaledDotProductAttention(q, Tensor.Zeros(2, 5, 7), Tensor.Zeros(2, 5, 3))).ParamName);
        Assert.Equal("v", Assert.Throws<ShapeMismatchException>(() => Tensor.ScaledDotProductAttention(q, Tensor.Zeros(2, 5, 8), Tensor.Zeros(2, 6, 3))).ParamName);
        Assert.Equal("q", Assert.Throws<ShapeMismatchException>(() => Tensor.ScaledDotProductAttention(Tensor.Zeros(8), Tensor.Zeros(5, 8), Tensor.Zeros(5, 3))).ParamName);
        Assert.Throws<ShapeMismatchException>(() => Tensor.ScaledDotProductAttention(q, Tensor.Zeros(3, 5, 8), Tensor.Zeros(3, 5, 3)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.ScaledDotProductAttention(q, q, q, scale: double.NaN));
        Assert.Throws<NotSupportedException>(() => Tensor.ScaledDotProductAttention(q.To(DType.Int32), q.To(DType.Int32), q.To(DType.Int32)));
        Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, q.To(DType.Float64), q));
    }
}
