using BenchmarkDotNet.Attributes;
using Kiln.Bench;

/// <summary>
/// One training step of peer_bench.py's mlp_train_step_784_1024_1024_10_b256_adam, as `kiln bench` times it
/// (<see cref="Workloads"/>): MLP 784-1024-1024-10 (ReLU), batch 256, cross entropy, Adam(1e-3); zero grad, forward,
/// backward, step, with a tensor scope per step.
/// </summary>
[MemoryDiagnoser]
public class MlpTrainStepBench
{
    Action _step = null!;

    [GlobalSetup]
    public void Setup() => _step = Workloads.Get("mlp_train_step_784_1024_1024_10_b256_adam").Setup(Kiln.Device.Cpu);

    [Benchmark]
    public void TrainStep() => _step();
}
