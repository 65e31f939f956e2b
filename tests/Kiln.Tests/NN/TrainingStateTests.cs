using Kiln.NN;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>
/// Resumable training (issue #19): optimizer and schedule state round-trips through <see cref="Checkpoint"/> so a resumed
/// run is bit-identical to an uninterrupted one; a custom optimizer and a custom schedule written as a user would; the
/// new schedules against their closed forms and PyTorch's ReduceLROnPlateau rules; the state errors.
/// </summary>
public class TrainingStateTests
{
    sealed class Net : Module<Tensor, Tensor>
    {
        readonly Sequential _body;
        /// <summary>Dropout's stream: part of the training state a checkpoint must carry.</summary>
        public Generator DropoutStream { get; } = new(1234);
        public Net(ulong seed)
        {
            var g = new Generator(seed);
            _body = RegisterModule("body", new Sequential(new Linear(6, 16, generator: g), new Activation(ActivationKind.Relu), new Dropout(0.2, DropoutStream), new Linear(16, 3, generator: g)));
        }
        public override Tensor Forward(Tensor x) => _body.Forward(x);
    }

    /// <summary>Trains <paramref name="steps"/> steps from the current state; batches come from <paramref name="data"/>.</summary>
    static void Train(Net net, Optimizer opt, Generator data, int steps, ReduceLrOnPlateau? plateau)
    {
        for (int s = 0; s < steps; s++)
        {
            using var scope = Tensor.Scope();
            var x = Tensor.Randn(new Shape(8, 6), data);
            var y = Tensor.RandInt(new Shape(8), 0, 3, data);
            var loss = Losses.CrossEntropy(net.Forward(x), y);
            opt.ZeroGrad();
            loss.Backward();
            opt.Step();
            if (plateau is not null && opt.StepCount % 2 == 0) plateau.Report(Math.Round(loss.Item(), 1));
        }
    }

    public static IEnumerable<object[]> Optimizers => [["adamw"], ["sgd"], ["plateau"]];

    static (Optimizer Opt, ReduceLrOnPlateau? Plateau) Make(string kind, Net net) => kind switch
    {
        "adamw" => (new AdamW(net.Parameters(), 3e-3) { Schedule = LrSchedule.Cosine(3e-3, 40, 1e-4, warmup: 5) }, null),
        "sgd" => (new SGD(net.Parameters(), 0.05, momentum: 0.9, nesterov: true) { Schedule = LrSchedule.MultiStep(0.05, [7, 15], 0.5).WithWarmup(3) }, null),
        _ => MakePlateau(net),
    };

    static (Optimizer, ReduceLrOnPlateau) MakePlateau(Net net)
    {
        var plateau = new ReduceLrOnPlateau(0.05, factor: 0.5, patience: 1);
        return (new Adam(net.Parameters(), 0.05) { Schedule = plateau }, plateau);
    }

    [Theory, MemberData(nameof(Optimizers))]
    public void Training_resumed_from_a_checkpoint_is_bit_identical_to_an_uninterrupted_run(string kind)
    {
        var whole = new Net(1);
        var (opt, plateau) = Make(kind, whole);
        var data = new Generator(99);
        Train(whole, opt, data, 24, plateau);

        var first = new Net(1);
        var (opt1, plateau1) = Make(kind, first);
        var data1 = new Generator(99);
        Train(first, opt1, data1, 11, plateau1);
        string path = Path.Combine(Path.GetTempPath(), $"kiln-resume-{kind}-{Environment.ProcessId}.safetensors");
        Checkpoint.Save(path, first, opt1, new Dictionary<string, Generator> { ["data"] = data1, ["dropout"] = first.DropoutStream });

        // A different initialisation, fresh optimizer state and a fresh data stream: everything must come from the file.
        var resumed = new Net(7);
        var (opt2, plateau2) = Make(kind, resumed);
        var data2 = new Generator(99);
        Checkpoint.Load(path, resumed, opt2, new Dictionary<string, Generator> { ["data"] = data2, ["dropout"] = resumed.DropoutStream });
        File.Delete(path);
        Assert.Equal(11, opt2.StepCount);
        Train(resumed, opt2, data2, 13, plateau2);

        var a = whole.StateDict();
        var b = resumed.StateDict();
        foreach (var (name, t) in a)
            Assert.True(t.ToDoubleArray().SequenceEqual(b[name].ToDoubleArray()), $"{kind}: {name} differs after resuming");
        Assert.Equal(opt.CurrentLearningRate, opt2.CurrentLearningRate);
        if (plateau is not null) Assert.True(plateau.CurrentRate < 0.05, "the plateau schedule never dropped, so the test would not see its state");
    }

    /// <summary>Lion (Chen et al. 2023) as a user writes it: one state buffer, tensor ops only.</summary>
    sealed class Lion : Optimizer
    {
        readonly Tensor[] _m;
        readonly double _b1, _b2;
        public Lion(IEnumerable<Parameter> ps, double lr, double b1 = 0.9, double b2 = 0.99) : base(ps, lr) { _m = AddState("exp_avg"); _b1 = b1; _b2 = b2; }
        protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
        {
            var m = _m[index];
            param.Sub_((m * _b1 + grad * (1 - _b1)).Sign() * lr);
            m.Mul_(_b2).Add_(grad * (1 - _b2));
        }
    }

    /// <summary>The inverse-square-root schedule of the Transformer paper, as a user writes it.</summary>
    sealed class InverseSqrt(double peak, int warmup) : LrSchedule
    {
        protected override double Rate(int step) => peak * Math.Min((step + 1.0) / warmup, Math.Sqrt(warmup / (step + 1.0)));
    }

    [Fact]
    public void A_user_written_optimizer_and_schedule_train_and_their_state_round_trips()
    {
        var target = Tensor.FromArray([0.3, -0.4, 0.2]);
        var p = new Parameter(Tensor.Zeros([3], DType.Float64));
        var lion = new Lion([p], 0.05) { Schedule = new InverseSqrt(0.05, 10) };
        for (int s = 0; s < 200; s++)
        {
            lion.ZeroGrad();
            ((p.Value - target).Square().Sum()).Backward();
            lion.Step();
        }
        Assert.True((p.Value - target).Abs().Max().Item() < 0.05, $"Lion did not converge: {p.Value}");
        Assert.Equal(0.05 * Math.Sqrt(10 / 201.0), lion.CurrentLearningRate, 1e-15);

        var state = lion.StateDict();
        Assert.Equal(["lr", "state.0.exp_avg", "state.0.step", "step"], state.Keys.Order().ToArray());
        var copy = new Lion([new Parameter(Tensor.Zeros([3], DType.Float64))], 0.05) { Schedule = new InverseSqrt(0.05, 10) };
        copy.LoadStateDict(state);
        Assert.Equal(200, copy.StepCount);
        Assert.Equal(200, copy.ParameterSteps(0));
        Assert.Equal(state["state.0.exp_avg"].ToDoubleArray(), copy.StateDict()["state.0.exp_avg"].ToDoubleArray());
    }

    [Fact]
    public void Step_schedules_follow_their_closed_forms()
    {
        var step = LrSchedule.Step(1.0, 3, 0.5);
        var multi = LrSchedule.MultiStep(1.0, [2, 5], 0.1);
        var exp = LrSchedule.Exponential(2.0, 0.9);
        var warm = LrSchedule.Exponential(2.0, 0.9).WithWarmup(4);
        for (int s = 0; s < 12; s++)
        {
            Assert.Equal(Math.Pow(0.5, s / 3), step.At(s));
            Assert.Equal(Math.Pow(0.1, (s >= 2 ? 1 : 0) + (s >= 5 ? 1 : 0)), multi.At(s), 1e-15);
            Assert.Equal(2.0 * Math.Pow(0.9, s), exp.At(s), 1e-15);
            Assert.Equal(s < 4 ? 2.0 * (s + 1) / 4 : 2.0 * Math.Pow(0.9, s - 4), warm.At(s), 1e-15);
        }
        Assert.Equal(0.25, LrSchedule.FromFunction(s => 1.0 / (s + 1)).At(3));
        Assert.Throws<ArgumentException>(() => LrSchedule.MultiStep(1, [5, 2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => LrSchedule.Step(1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => LrSchedule.Exponential(1, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => step.WithWarmup(-1));
    }

    [Fact]
    public void Reduce_on_plateau_follows_pytorchs_rules()
    {
        // Traced by hand through torch.optim.lr_scheduler.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1,
        // threshold=0.1, mode="min", threshold_mode="rel"): a drop after two reports without a 10% improvement, then one
        // report of cooldown in which bad reports do not count.
        var r = new ReduceLrOnPlateau(1.0, factor: 0.5, patience: 1, threshold: 0.1, cooldown: 1, minLr: 0.2);
        double[] metrics = [10, 9.5, 9.2, 9.1, 9.0, 8.0, 7.9, 7.9, 7.9, 7.9, 7.9];
        double[] rates = [1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2];
        for (int i = 0; i < metrics.Length; i++)
        {
            r.Report(metrics[i]);
            Assert.True(rates[i] == r.At(i), $"after report {i} ({metrics[i]}): rate {r.At(i)}, expected {rates[i]}");
        }
        var saved = r.StateDict();
        var copy = new ReduceLrOnPlateau(1.0, factor: 0.5, patience: 1, threshold: 0.1, cooldown: 1, minLr: 0.2);
        copy.LoadStateDict(saved);
        Assert.Equal(saved, copy.StateDict());
        Assert.Throws<ArgumentException>(() => r.Report(double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReduceLrOnPlateau(1, factor: 1));
    }

    [Fact]
    public void Loading_state_from_another_optimizer_names_what_does_not_fit()
    {
        var p = new Parameter(Tensor.Zeros([3]));
        var q = new Parameter(Tensor.Zeros([4]));
        var adam = new Adam([p, q]);
        var sgd = new SGD([p, q], 0.1, momentum: 0.9);
        var e = Assert.Throws<ArgumentException>(() => adam.LoadStateDict(sgd.StateDict()));
        Assert.Contains("state.0.exp_avg", e.Message);
        Assert.Contains("state.0.momentum_buffer", e.Message);
        var swapped = new Adam([q, p]);
        e = Assert.Throws<ArgumentException>(() => swapped.LoadStateDict(adam.StateDict()));
        Assert.Contains("has shape [3]", e.Message);
        var noSchedule = new Adam([p, q]);
        var withPlateau = new Adam([p, q]) { Schedule = new ReduceLrOnPlateau(0.1) };
        e = Assert.Throws<ArgumentException>(() => noSchedule.LoadStateDict(withPlateau.StateDict()));
        Assert.Contains("no Schedule", e.Message);
    }
}
