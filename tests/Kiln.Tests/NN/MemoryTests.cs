using Kiln.NN;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>Storage.LiveCount is process-wide, so these run alone.</summary>
[CollectionDefinition("live-count", DisableParallelization = true)]
public class LiveCountCollection;

/// <summary>A long training loop does not grow memory: live storages return to the same count after every step.</summary>
[Collection("live-count")]
public class MemoryTests
{
    static (MLP Model, AdamW Opt, Tensor X, Tensor Y) Setup()
    {
        var g = new Generator(1);
        var model = new MLP([16, 32, 32, 4], dropout: 0.1, generator: g);
        var opt = new AdamW(model.Parameters(), 1e-3) { Schedule = LrSchedule.Cosine(1e-3, 300, warmup: 10) };
        return (model, opt, Tensor.Randn([64, 16], g), Tensor.RandInt([64], 0, 4, g));
    }

    static void Settle()
    {
        GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
    }

    [Fact]
    public void Scoped_training_steps_leave_no_live_tensors_behind()
    {
        var (model, opt, x, y) = Setup();
        double first = 0, last = 0;
        void StepOnce(int s)
        {
            using var scope = Tensor.Scope();
            opt.ZeroGrad();
            var loss = Losses.CrossEntropy(model.Forward(x), y, labelSmoothing: 0.1);
            loss.Backward();
            GradClip.ClipGradNorm(model.Parameters(), 1.0);
            opt.Step();
            if (s == 0) first = loss.Item();
            last = loss.Item();
        }
        for (int s = 0; s < 5; s++) StepOnce(s);
        Settle();
        long baseline = Storage.LiveCount;
        for (int s = 5; s < 300; s++)
        {
            StepOnce(s);
            Assert.Equal(baseline, Storage.LiveCount);
        }
        Assert.True(last < first, $"loss did not fall: {first} -> {last}");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static void Train(MLP model, AdamW opt, Tensor x, Tensor y, int steps)
    {
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            Losses.CrossEntropy(model.Forward(x), y).Backward();
            opt.Step();
        }
        opt.ZeroGrad();
    }

    [Fact]
    public void Without_scopes_the_freed_tape_lets_the_collector_reclaim_every_step()
    {
        var (model, opt, x, y) = Setup();
        Train(model, opt, x, y, 10);
        Settle();
        long baseline = Storage.LiveCount;
        Train(model, opt, x, y, 100);
        Settle();
        Assert.Equal(baseline, Storage.LiveCount);
    }
}
