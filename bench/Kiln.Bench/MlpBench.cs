using BenchmarkDotNet.Attributes;
using Kiln;
using Kiln.NN;

/// <summary>
/// One training step of peer_bench.py's mlp_train_step_784_1024_1024_10_b256_adam: MLP 784-1024-1024-10 (ReLU),
/// batch 256, cross entropy, Adam(1e-3); zero grad, forward, backward, step, with a tensor scope per step.
/// </summary>
[MemoryDiagnoser]
public class MlpTrainStepBench
{
    MLP _model = null!;
    Adam _opt = null!;
    Tensor _x = null!, _y = null!;

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(0);
        _model = new MLP([784, 1024, 1024, 10], generator: g);
        _opt = new Adam(_model.Parameters(), 1e-3);
        _x = Tensor.Randn([256, 784], g);
        _y = Tensor.RandInt([256], 0, 10, g);
    }

    [Benchmark]
    public void TrainStep()
    {
        using var scope = Tensor.Scope();
        _opt.ZeroGrad();
        Losses.CrossEntropy(_model.Forward(_x), _y).Backward();
        _opt.Step();
    }
}
