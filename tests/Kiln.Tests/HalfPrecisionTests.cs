using Kiln.IO;
using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// BFloat16 and Float16 as compute dtypes (issue #15): results are the Float32 computation rounded once, gradients come
/// back in the input's dtype, ops PyTorch refuses in half refuse with the op and dtype named, <see cref="Autocast"/>
/// runs matmul-class ops in half and reductions, softmax, norms and losses in Float32, and half parameters train
/// through Float32 master weights. The per-op accuracy on every device is in the op definitions (OpConformanceTests).
/// </summary>
public class HalfPrecisionTests
{
    static readonly DType[] Halves = [DType.BFloat16, DType.Float16];

    public static IEnumerable<object[]> DevicesAndHalves => from d in Devices.All from h in Halves select new object[] { d.ToString(), h };

    // The float32 computation of f on x's values, rounded once to x's half dtype.
    static double[] RoundedFloat32(Tensor x, Func<Tensor, Tensor> f) => f(x.To(DType.Float32)).To(x.DType).ToDoubleArray();

    [Theory, MemberData(nameof(DevicesAndHalves))]
    public void The_issue_cases_run_in_half_and_round_once(string device, DType half)
    {
        var dev = Devices.Parse(device);
        var x = Tensor.FromArray(new[] { 1.5f, -2.25f, 3.125f, 100f }).To(half).To(dev);
        var y = x + 1;
        Assert.Equal(half, y.DType);
        Assert.Equal(new[] { 2.5, -1.25, 4.125, 101 }, y.ToDoubleArray());
        var m = Tensor.Maximum(x, x.Neg());
        Assert.Equal(half, m.DType);
        Assert.Equal(new[] { 1.5, 2.25, 3.125, 100 }, m.ToDoubleArray());
        // A sum whose terms each round away in half: Float32 accumulation keeps them.
        var ones = Tensor.Full([4096], 1.0 / 1024, half, dev);
        Assert.Equal(4.0, Tensor.Full([1], 1.0, half, dev).Add(ones.Sum()).Item() - 1, 1e-12);
        Assert.Equal(half, (x * 0.5).DType);
        Assert.Equal(DType.Float32, (x + Tensor.Ones([4], DType.Float32, dev)).DType);
    }

    [Theory, MemberData(nameof(DevicesAndHalves))]
    public void Row_ops_and_attention_compute_in_float32_and_round_once(string device, DType half)
    {
        var dev = Devices.Parse(device);
        var g = new Generator(7);
        var x = Tensor.Randn([3, 5, 8], g).To(half).To(dev);
        Assert.Equal(RoundedFloat32(x, t => t.Softmax(-1)), x.Softmax(-1).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.LogSoftmax(-1)), x.LogSoftmax(-1).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.Mean([1, 2])), x.Mean([1, 2]).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.Var(-1)), x.Var(-1).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.Cumsum(1)), x.Cumsum(1).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.LayerNorm()), x.LayerNorm().ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.RmsNorm()), x.RmsNorm().ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.Norm(2, [2])), x.Norm(2, [2]).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.LogSumExp([2])), x.LogSumExp([2]).ToDoubleArray());
        var (q, k, v) = (x, x.Flip([1]), x * 0.5);
        var a = Tensor.ScaledDotProductAttention(q, k, v, causal: true);
        Assert.Equal(half, a.DType);
        var a32 = Tensor.ScaledDotProductAttention(q.To(DType.Float32), k.To(DType.Float32), v.To(DType.Float32), causal: true).To(half);
        Assert.Equal(a32.ToDoubleArray(), a.ToDoubleArray());
    }

    [Theory, MemberData(nameof(DevicesAndHalves))]
    public void Convolution_pooling_and_resampling_compute_in_float32_and_round_once(string device, DType half)
    {
        var dev = Devices.Parse(device);
        var g = new Generator(9);
        var x = Tensor.Randn([2, 3, 7, 5], g).To(half).To(dev);
        var w = Tensor.Randn([4, 3, 3, 2], g).To(half).To(dev);
        Assert.Equal(RoundedFloat32(x, t => Tensor.Conv2d(t, w.To(DType.Float32), padding: 1)), Tensor.Conv2d(x, w, padding: 1).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.MaxPool2d(2)), x.MaxPool2d(2).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.AvgPool2d(3, stride: 2, padding: 1)), x.AvgPool2d(3, stride: 2, padding: 1).ToDoubleArray());
        Assert.Equal(RoundedFloat32(x, t => t.Interpolate([9, 4], mode: InterpolateMode.Bilinear)), x.Interpolate([9, 4], mode: InterpolateMode.Bilinear).ToDoubleArray());
    }

    [Theory, MemberData(nameof(DevicesAndHalves))]
    public void Movement_and_indexing_keep_half_values_exactly(string device, DType half)
    {
        var dev = Devices.Parse(device);
        var x = Tensor.Randn([4, 6], new Generator(3)).To(half).To(dev);
        var xd = x.ToDoubleArray();
        var idx = Tensor.FromArray(new long[] { 5, 0, 3 }).To(dev);
        Assert.Equal(x.To(DType.Float32).IndexSelect(1, idx).ToDoubleArray(), x.IndexSelect(1, idx).ToDoubleArray());
        Assert.Equal(half, Tensor.Concat([x, x.T.Reshape(4, 6)], 0).DType);
        Assert.Equal(xd.Concat(x.T.Contiguous().ToDoubleArray()), Tensor.Concat([x, x.T.Reshape(4, 6)], 0).ToDoubleArray());
        var gidx = Tensor.FromArray(new long[] { 1, 0, 2, 3, 1, 0 }, new Shape(1, 6)).To(dev);
        Assert.Equal(x.To(DType.Float32).Gather(0, gidx).ToDoubleArray(), x.Gather(0, gidx).ToDoubleArray());
        var s = Tensor.Zeros([4, 6], half, dev).ScatterAdd(0, gidx, x.Narrow(0, 0, 1));
        Assert.Equal(Tensor.Zeros([4, 6], DType.Float32, dev).ScatterAdd(0, gidx, x.Narrow(0, 0, 1).To(DType.Float32)).To(half).ToDoubleArray(), s.ToDoubleArray());
        var (values, indices) = x.Sort(-1);
        var (v32, i32) = x.To(DType.Float32).Sort(-1);
        Assert.Equal(v32.ToDoubleArray(), values.ToDoubleArray());
        Assert.Equal(i32.ToArray<long>(), indices.ToArray<long>());
        Assert.Equal(xd.Select(v => v > 0 ? v : 0), Tensor.Where(x > 0.0, x, x.ZerosLike()).ToDoubleArray());
        Assert.Equal(xd.Select(v => Math.Clamp(v, -0.5, 0.5)), x.Clamp(-0.5, 0.5).ToDoubleArray());
    }

    [Theory, MemberData(nameof(DevicesAndHalves))]
    public void Gradients_return_in_the_inputs_half_dtype(string device, DType half)
    {
        var dev = Devices.Parse(device);
        var x = Tensor.Randn([3, 4], new Generator(11)).To(half).To(dev);
        x.RequiresGrad = true;
        var w = Tensor.Randn([4], new Generator(12)).To(half).To(dev);
        var loss = (x.Softmax(-1) * w).Sum() + x.Square().Mean() + x.LayerNorm().Sum();
        loss.Backward();
        Assert.Equal(half, x.Grad!.DType);
        // The same graph in Float32: the half gradient is it within the rounding of a few half steps.
        var x32 = x.Detach().To(DType.Float32);
        x32.RequiresGrad = true;
        ((x32.Softmax(-1) * w.To(DType.Float32)).Sum() + x32.Square().Mean() + x32.LayerNorm().Sum()).Backward();
        var (got, want) = (x.Grad.ToDoubleArray(), x32.Grad!.ToDoubleArray());
        double u = Kiln.Ops.CheckResult.UnitRoundoff(half), scale = want.Max(Math.Abs);
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(got[i] - want[i]) <= 16 * u * scale, $"grad[{i}] {got[i]} vs Float32 {want[i]}");
    }

    [Fact]
    public void Ops_pytorch_runs_only_in_full_precision_refuse_halves_by_name()
    {
        var a = Tensor.Eye(3).To(DType.BFloat16);
        var e = Assert.Throws<NotSupportedException>(() => a.Cholesky());
        Assert.Contains("cholesky", e.Message);
        Assert.Contains("BFloat16", e.Message);
        Assert.Contains("Float16", Assert.Throws<NotSupportedException>(() => Tensor.Eye(3).To(DType.Float16).Inverse()).Message);
    }

    [Fact]
    public void Autocast_runs_matmul_class_ops_in_half_and_reductions_in_float32()
    {
        var g = new Generator(5);
        var (a, b) = (Tensor.Randn([4, 8], g), Tensor.Randn([8, 3], g));
        Assert.Null(Autocast.Current);
        using (Autocast.Enable(DType.BFloat16))
        {
            Assert.Equal(DType.BFloat16, Autocast.Current);
            var y = a.MatMul(b);
            Assert.Equal(DType.BFloat16, y.DType);
            Assert.Equal(a.To(DType.BFloat16).To(DType.Float32).MatMul(b.To(DType.BFloat16).To(DType.Float32)).To(DType.BFloat16).ToDoubleArray(), y.ToDoubleArray());
            Assert.Equal(DType.BFloat16, Tensor.Linear(a, b.T).DType);
            Assert.Equal(DType.BFloat16, Tensor.Einsum("ik,kj->ij", a, b).DType);
            Assert.Equal(DType.BFloat16, Tensor.ScaledDotProductAttention(a, a, a).DType);
            Assert.Equal(DType.Float32, y.Softmax(-1).DType);
            Assert.Equal(DType.Float32, y.Sum().DType);
            Assert.Equal(DType.Float32, y.LayerNorm().DType);
            Assert.Equal(DType.Float32, Losses.CrossEntropy(y, Tensor.FromArray(new long[] { 0, 1, 2, 0 })).DType);
            // Elementwise ops keep their operands' dtype; Float64 is never cast.
            Assert.Equal(DType.BFloat16, y.Relu().DType);
            Assert.Equal(DType.Float64, a.To(DType.Float64).MatMul(b.To(DType.Float64)).DType);
            using (Autocast.Disable())
            {
                Assert.Null(Autocast.Current);
                Assert.Equal(DType.Float32, a.MatMul(b).DType);
            }
            using (Autocast.Enable(DType.Float16)) Assert.Equal(DType.Float16, a.MatMul(b).DType);
            Assert.Equal(DType.BFloat16, Autocast.Current);
        }
        Assert.Null(Autocast.Current);
        Assert.Equal(DType.Float32, a.MatMul(b).DType);
        Assert.Throws<ArgumentException>(() => Autocast.Enable(DType.Float32));
    }

    [Fact]
    public async Task Autocast_flows_into_async_continuations_and_not_into_other_flows()
    {
        var a = Tensor.Ones([2, 2]);
        Task<DType> other;
        using (Autocast.Enable())
        {
            other = Task.Run(() => a.MatMul(a).DType);   // started inside: sees the scope
            await Task.Yield();
            Assert.Equal(DType.BFloat16, a.MatMul(a).DType);
        }
        Assert.Equal(DType.BFloat16, await other);
        Assert.Equal(DType.Float32, await Task.Run(() => a.MatMul(a).DType));
    }

    [Fact]
    public void Autocast_gradients_reach_float32_parameters_in_float32()
    {
        var w = Tensor.Randn([3, 4], new Generator(1));
        w.RequiresGrad = true;
        var x = Tensor.Randn([5, 4], new Generator(2));
        using (Autocast.Enable()) Losses.Mse(Tensor.Linear(x, w), Tensor.Zeros([5, 3])).Backward();
        Assert.Equal(DType.Float32, w.Grad!.DType);
        var w2 = w.Detach().Clone();
        w2.RequiresGrad = true;
        Losses.Mse(Tensor.Linear(x, w2), Tensor.Zeros([5, 3])).Backward();
        var (got, want) = (w.Grad.ToDoubleArray(), w2.Grad!.ToDoubleArray());
        double scale = want.Max(Math.Abs);
        for (int i = 0; i < want.Length; i++) Assert.True(Math.Abs(got[i] - want[i]) <= 0.05 * scale, $"grad[{i}] {got[i]} vs {want[i]}");
    }

    [Fact]
    public void Master_weights_accumulate_updates_below_the_half_spacing_and_are_saved()
    {
        // bf16 spacing at 1 is 2^-7; SGD steps of 2^-10 vanish without a Float32 master copy and add up with one.
        var p = new Parameter(Tensor.Ones([3], DType.BFloat16));
        var q = new Parameter(Tensor.Ones([3], DType.BFloat16));
        var withMaster = new SGD([p], Math.ScaleB(1.0, -10));
        var without = new SGD([q], Math.ScaleB(1.0, -10)) { MasterWeights = false };
        for (int i = 0; i < 16; i++)
        {
            p.Grad = Tensor.Ones([3], DType.BFloat16);
            q.Grad = Tensor.Ones([3], DType.BFloat16);
            withMaster.Step();
            without.Step();
        }
        Assert.Equal(DType.BFloat16, p.DType);
        Assert.Equal(new[] { 1 - 16 * Math.ScaleB(1.0, -10) }, p.ToDoubleArray().Distinct());
        Assert.Equal(new[] { 1.0 }, q.ToDoubleArray().Distinct());
        Assert.Equal(DType.Float32, withMaster.MasterWeight(0)!.DType);
        Assert.Null(without.MasterWeight(0));
        var state = withMaster.StateDict();
        Assert.Equal(withMaster.MasterWeight(0)!.ToDoubleArray(), state["state.0.master"].ToDoubleArray());
        Assert.DoesNotContain("state.0.master", without.StateDict().Keys);
        var restored = new SGD([new Parameter(Tensor.Ones([3], DType.BFloat16))], 0.1);
        restored.LoadStateDict(state);
        Assert.Equal(state["state.0.master"].ToDoubleArray(), restored.MasterWeight(0)!.ToDoubleArray());
    }

    // A small MLP on the digits: held-out accuracy after a few epochs, in Float32, under bf16 autocast, or with bf16
    // parameters (Float32 master weights) under autocast.
    static double DigitsAccuracy(bool autocast, bool halfParameters)
    {
        const int epochs = 12, batch = 64;
        var (pixels, labels) = Datasets.Digits();
        var ((xTrain, yTrain), (xTest, yTest)) = Datasets.TrainTestSplit(pixels / 16.0, labels, testFraction: 0.2, seed: 2026);
        var g = new Generator(2026);
        var model = new MLP([64, 64, 10], ActivationKind.Relu, generator: g);
        if (halfParameters) model.To(DType.BFloat16);
        var opt = new AdamW(model.Parameters(), 3e-3);
        int n = yTrain.Numel;
        for (int e = 0; e < epochs; e++)
        {
            var order = Tensor.RandPerm(n, g);
            for (int s = 0; s * batch < n; s++)
                using (Tensor.Scope())
                {
                    var idx = order.Narrow(0, s * batch, Math.Min(batch, n - s * batch));
                    opt.ZeroGrad();
                    Tensor loss;
                    using (autocast ? Autocast.Enable(DType.BFloat16) : Autocast.Disable())
                        loss = Losses.CrossEntropy(model.Forward(xTrain.IndexSelect(0, idx)), yTrain.IndexSelect(0, idx));
                    loss.Backward();
                    opt.Step();
                }
        }
        using (Autograd.NoGrad())
        using (autocast ? Autocast.Enable(DType.BFloat16) : Autocast.Disable())
            return model.Forward(xTest).ArgMax(axis: 1).Eq(yTest).To(DType.Float32).Mean().Item();
    }

    [Fact]
    public void Digits_mlp_in_bf16_autocast_reaches_the_float32_accuracy_within_a_point()
    {
        double f32 = DigitsAccuracy(autocast: false, halfParameters: false);
        double bf16 = DigitsAccuracy(autocast: true, halfParameters: false);
        double master = DigitsAccuracy(autocast: true, halfParameters: true);
        Assert.True(f32 > 0.9, $"float32 accuracy {f32:P1}");
        Assert.True(Math.Abs(bf16 - f32) <= 0.01, $"bf16 autocast {bf16:P1} vs float32 {f32:P1}");
        Assert.True(Math.Abs(master - f32) <= 0.01, $"bf16 parameters with master weights {master:P1} vs float32 {f32:P1}");
    }
}

/// <summary>
/// <c>kiln lm</c> on the shipped checkpoint (stored as bf16) and on the same checkpoint with its weights widened to Float32
/// and saved: the bf16 run keeps its linear weights bf16, and each product widens them exactly, so the logits are equal.
/// </summary>
[Collection(nameof(SerialCollection))]
public class HalfCheckpointTests
{
    static string Shipped => Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "tools", "Kiln.Cli", "Models", "looping-tiny");

    static double[] Logits(string model, string ids, string dir)
    {
        var root = new System.CommandLine.RootCommand("kiln");
        root.Subcommands.Add(Kiln.Cli.LmVerb.Build());
        string path = Path.Combine(dir, Guid.NewGuid() + ".npy");
        var saved = Console.Error;
        Console.SetError(new StringWriter());
        try { Assert.Equal(0, Kiln.Cli.Cli.Run(root, ["lm", "logits", "--model", model, "--ids", ids, "--out", path])); }
        finally { Console.SetError(saved); }
        return Npy.Load(path).ToDoubleArray();
    }

    [Fact]
    public void Lm_runs_the_bf16_checkpoint_with_bf16_linear_weights_and_float32_logits()
    {
        var dir = Directory.CreateTempSubdirectory("kiln-bf16-");
        try
        {
            var weights = Safetensors.Load(Path.Combine(Shipped, "model.safetensors"));
            Assert.All(weights.Values, w => Assert.Equal(DType.BFloat16, w.DType));
            Safetensors.Save(Path.Combine(dir.FullName, "model.safetensors"), weights.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.Float32)));
            foreach (var f in new[] { "config.json", "tokenizer.json" }) File.Copy(Path.Combine(Shipped, f), Path.Combine(dir.FullName, f));
            var model = Kiln.NN.Decoder.DecoderModel.Load(Shipped);
            Assert.Equal(DType.BFloat16, model.WeightDType);
            Assert.Equal(DType.Float32, model.DType);
            Assert.Equal(DType.Float32, Kiln.NN.Decoder.DecoderModel.Load(dir.FullName).WeightDType);
            const string ids = "72,101,108,108,111,44,32,119,111,114,108,100,46,32,84,104,101,32,99,97,116";
            var half = Logits(Shipped, ids, dir.FullName);
            var full = Logits(dir.FullName, ids, dir.FullName);
            Assert.Equal(full, half);
        }
        finally { dir.Delete(recursive: true); }
    }
}
