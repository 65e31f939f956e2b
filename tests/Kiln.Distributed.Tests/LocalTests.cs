using Kiln.NN;
using Xunit;

namespace Kiln.Distributed.Tests;

/// <summary>Single-process tests: no MPI needed.</summary>
public sealed class LocalTests
{
    [Fact]
    public void AMissingMpiLibraryIsNamedWithHowToInstallOne()
    {
        var e = Assert.Throws<DistributedException>(() => MpiLibrary.Open(["libkiln-no-such-mpi.so.99"]));
        Assert.Contains("no MPI library found", e.Message);
        Assert.Contains("libkiln-no-such-mpi.so.99", e.Message);
        Assert.Contains("apt-get install openmpi-bin", e.Message);
        Assert.Contains(MpiLibrary.LibraryVariable, e.Message);
    }

    [Theory]
    [InlineData(10, 3, false)]
    [InlineData(10, 3, true)]
    [InlineData(7, 2, false)]
    [InlineData(1, 4, false)]
    [InlineData(0, 2, false)]
    public void SamplerSharesAreEqualSizedAndCoverTheDataset(int length, int world, bool dropLast)
    {
        var shares = Enumerable.Range(0, world).Select(r => new DistributedSampler(length, r, world, seed: 5, dropLast: dropLast) { Epoch = 2 }.Indices()).ToArray();
        int count = dropLast ? length / world : (length + world - 1) / world;
        Assert.All(shares, s => Assert.Equal(count, s.Length));
        var all = shares.SelectMany(s => s).ToArray();
        Assert.All(all, i => Assert.InRange(i, 0, length - 1));
        if (dropLast) Assert.Equal(all.Length, all.Distinct().Count());
        else Assert.Equal(length, all.Distinct().Count());
        // The same seed and epoch give the same shares; another epoch reshuffles.
        Assert.Equal(shares[0], new DistributedSampler(length, 0, world, seed: 5, dropLast: dropLast) { Epoch = 2 }.Indices());
        if (length >= 7) Assert.NotEqual(shares[0], new DistributedSampler(length, 0, world, seed: 5, dropLast: dropLast) { Epoch = 3 }.Indices());
    }

    [Fact]
    public void SamplerRejectsARankOutsideTheWorld()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(10, 2, 2));
        Assert.Equal("rank", e.ParamName);
    }

    [Fact]
    public void PostAccumulateGradHooksFireOncePerLeafWithTheFinalGradientBeforeBackwardEnds()
    {
        // y = sum(w2 * tanh(w1 * x)): w2's gradient is final before w1's is computed.
        var w1 = Tensor.FromArray(new[] { 0.5, -1.0 }).RequiresGrad_();
        var w2 = Tensor.FromArray(new[] { 2.0, 3.0 }).RequiresGrad_();
        var x = Tensor.FromArray(new[] { 1.0, 2.0 });
        var seen = new List<(string Name, double[] Grad, bool OtherDone)>();
        using var h1 = w1.RegisterPostAccumulateGradHook(t => seen.Add(("w1", t.Grad!.ToArray<double>(), w2.Grad is not null)));
        using var h2 = w2.RegisterPostAccumulateGradHook(t => seen.Add(("w2", t.Grad!.ToArray<double>(), w1.Grad is not null)));
        (w2 * (w1 * x).Tanh()).Sum().Backward();
        Assert.Equal(["w2", "w1"], seen.Select(s => s.Name));
        Assert.False(seen[0].OtherDone);
        Assert.Equal(w2.Grad!.ToArray<double>(), seen[0].Grad);
        Assert.Equal(w1.Grad!.ToArray<double>(), seen[1].Grad);
        var t1 = Math.Tanh(0.5);
        Assert.Equal(t1, seen[0].Grad[0], 1e-15);

        // A removed hook no longer fires; accumulation across backwards still adds.
        h2.Dispose();
        (w2 * (w1 * x).Tanh()).Sum().Backward();
        Assert.Equal(["w2", "w1", "w1"], seen.Select(s => s.Name));
        Assert.Equal(2 * t1, w2.Grad!.ToArray<double>()[0], 1e-15);
        Assert.Throws<InvalidOperationException>(() => (w1 * 2).RegisterPostAccumulateGradHook(_ => { }));
    }

    [Fact]
    public void DataParallelOnOneRankLeavesGradientsUntouched()
    {
        var model = new Linear(3, 2, generator: new Generator(1), dtype: DType.Float64);
        using var ddp = new DistributedDataParallel(new SoloGroup(), model);
        model.Forward(Tensor.Ones(new Shape(4, 3), DType.Float64)).Sum().Backward();
        var before = model.Parameters().Select(p => p.Grad!.ToArray<double>()).ToArray();
        ddp.FinishGradients();
        Assert.Equal(before, model.Parameters().Select(p => p.Grad!.ToArray<double>()).ToArray());
        Assert.Same(model, ddp.Module);
    }

    // A world of one: every collective is the identity.
    sealed class SoloGroup : IProcessGroup
    {
        public int Rank => 0;
        public int WorldSize => 1;
        public TimeSpan Timeout => TimeSpan.FromSeconds(1);
        public void Barrier() { }
        public void Broadcast(Tensor tensor, int root = 0) { }
        public void AllReduce(Tensor tensor) { }
        public void ReduceScatter(Tensor input, Tensor output) => output.Copy_(input.Reshape(output.Shape.ToArray()));
        public void AllGather(Tensor input, Tensor output) => output.Copy_(input.Reshape(output.Shape.ToArray()));
        public void Send(Tensor tensor, int destination, int tag = 0) => throw new NotSupportedException();
        public void Receive(Tensor tensor, int source, int tag = 0) => throw new NotSupportedException();
        public void Dispose() { }
    }
}
