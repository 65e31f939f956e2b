using System.Diagnostics;
using Kiln.NN;
using Kiln.NN.Decoder;

namespace Kiln.Distributed.Tests;

/// <summary>
/// The two-rank cases, run as <c>mpirun -np 2 dotnet Kiln.Distributed.Tests.dll CASE</c> by <see cref="TwoRankTests"/>.
/// Each rank prints "rank R ok CASE" when every check passed and exits 1 with the failed check otherwise.
/// </summary>
public static class Driver
{
    public static int Main(string[] args)
    {
        if (args.Length != 1) { Console.Error.WriteLine("usage: Kiln.Distributed.Tests CASE (collectives, ddp, fault, tensor-parallel)"); return 2; }
        using var group = MpiProcessGroup.Init(TimeSpan.FromSeconds(args[0] == "fault" ? 5 : 120));
        try
        {
            switch (args[0])
            {
                case "collectives": Collectives(group); break;
                case "ddp": DataParallel(group); break;
                case "fault": return Fault(group);
                case "tensor-parallel": TensorParallelCase(group); break;
                default: Console.Error.WriteLine($"unknown case {args[0]}"); return 2;
            }
        }
        catch (Exception e)
        {
            Console.WriteLine($"rank {group.Rank} FAILED {args[0]}: {e}");
            Console.Out.Flush();
            group.Abort(1);
            return 1;
        }
        Console.WriteLine($"rank {group.Rank} ok {args[0]}");
        return 0;
    }

    static void Check(bool ok, string what)
    {
        if (!ok) throw new Exception("check failed: " + what);
    }

    static double[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
    }

    // Every collective against a float64 reference built from the inputs every rank can regenerate.
    static void Collectives(MpiProcessGroup g)
    {
        int r = g.Rank, w = g.WorldSize;
        Check(w == 2, $"world size {w}, expected 2");
        Console.WriteLine($"rank {r}: {g.Library}");
        g.Barrier();

        var b = Tensor.FromArray(r == 0 ? new[] { 1.5, -2, 3 } : new double[3]);
        g.Broadcast(b, 0);
        Check(b.ToArray<double>().SequenceEqual([1.5, -2, 3]), "broadcast from rank 0");

        // Odd, empty and non-multiple-of-world sizes exercise the padding of the ring's blocks.
        foreach (int n in new[] { 0, 1, 7, 1001 })
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                var x = Tensor.FromArray(Random(n, 100 + r)).To(dtype);
                g.AllReduce(x);
                var got = x.ToDoubleArray();
                var a = Random(n, 100).Select(v => dtype == DType.Float32 ? (double)(float)v : v).ToArray();
                var c = Random(n, 101).Select(v => dtype == DType.Float32 ? (double)(float)v : v).ToArray();
                // Two addends: the rounded float64 sum is the exact sum rounded once, as the float32 sum is.
                var want = a.Zip(c, (u, v) => dtype == DType.Float32 ? (double)(float)(u + v) : u + v).ToArray();
                Check(got.SequenceEqual(want), $"all_reduce {dtype} of {n}");
            }

        // A transposed view is reduced and written back through the view.
        var m = Tensor.FromArray(Random(12, 200 + r), new Shape(3, 4)).T;
        var mWant = Tensor.FromArray(Random(12, 200).Zip(Random(12, 201), (u, v) => u + v).ToArray(), new Shape(3, 4)).T.Contiguous().ToArray<double>();
        g.AllReduce(m);
        Check(m.Contiguous().ToArray<double>().SequenceEqual(mWant), "all_reduce of a transposed view");

        var input = Tensor.FromArray(Random(10, 300 + r)).To(DType.Float32);
        var block = Tensor.Zeros(new Shape(5), DType.Float32);
        g.ReduceScatter(input, block);
        var sum = Random(10, 300).Zip(Random(10, 301), (u, v) => (double)(float)((double)(float)u + (float)v)).ToArray();
        Check(block.ToDoubleArray().SequenceEqual(sum.Skip(5 * r).Take(5)), "reduce_scatter block of this rank");

        var gathered = Tensor.Zeros(new Shape(6), DType.Float64);
        g.AllGather(Tensor.FromArray(Random(3, 400 + r)), gathered);
        Check(gathered.ToArray<double>().SequenceEqual(Random(3, 400).Concat(Random(3, 401))), "all_gather in rank order");

        var msg = Tensor.Zeros(new Shape(4), DType.Float64);
        if (r == 0) { g.Send(Tensor.FromArray(new double[] { 1, 2, 3, 4 }), 1, tag: 5); g.Receive(msg, 1, tag: 6); Check(msg.ToArray<double>().SequenceEqual([2.0, 4, 6, 8]), "receive the doubled reply"); }
        else { g.Receive(msg, 0, tag: 5); g.Send(msg * 2, 0, tag: 6); Check(msg.ToArray<double>().SequenceEqual([1.0, 2, 3, 4]), "receive from rank 0"); }

        bool threw = false;
        try { g.Send(msg, r); } catch (ArgumentOutOfRangeException e) { threw = e.ParamName == "destination"; }
        Check(threw, "sending to itself throws naming the destination");
    }

    static Dictionary<string, Parameter> Parameters(Dictionary<string, Tensor> weights) => weights.ToDictionary(kv => kv.Key, kv => new Parameter(kv.Value.Clone()));

    // Gradients of two half batches, averaged by DDP, against one process's gradient of the full batch; then replicas
    // stepped by AdamW must stay bitwise equal.
    static void DataParallel(MpiProcessGroup g)
    {
        int r = g.Rank, rows = 2, context = 5, batch = rows * g.WorldSize;
        var weights = Tiny.Weights(DType.Float64);
        var (input, target) = Tiny.Batch(batch, context, seed: 11);

        var full = Parameters(weights);
        Tiny.Loss(new DecoderModel(Tiny.Config, full.ToDictionary(kv => kv.Key, kv => kv.Value.Value), trainable: true), input, target, batch, context).Backward();

        // Rank 1 starts from other weights: the broadcast from rank 0 must replace them.
        var replica = Parameters(r == 0 ? weights : DecoderWeights.Init(Tiny.Config, new Generator(99), std: 0.3, dtype: DType.Float64));
        var model = new DecoderModel(Tiny.Config, replica.ToDictionary(kv => kv.Key, kv => kv.Value.Value), trainable: true);
        // Registered before DDP's hook, so it sees how many buckets were reduced before the last gradient (the
        // embedding's) arrived: the all-reduces must overlap the backward.
        DistributedDataParallel? ddpRef = null;
        int launchedBeforeLast = -1;
        using var probe = replica["model.embed_tokens.weight"].Value.RegisterPostAccumulateGradHook(_ => launchedBeforeLast = ddpRef!.LaunchedBuckets);
        using var ddp = ddpRef = new DistributedDataParallel(g, replica.Values, bucketBytes: 4096);
        Check(ddp.BucketCount > 2, $"{ddp.BucketCount} buckets; the test needs several");
        var mine = (input.AsSpan(r * rows * context, rows * context).ToArray(), target.AsSpan(r * rows * context, rows * context).ToArray());
        Tiny.Loss(model, mine.Item1, mine.Item2, rows, context).Backward();
        Check(launchedBeforeLast == ddp.BucketCount - 1, $"{launchedBeforeLast} of {ddp.BucketCount} buckets were launched before backward produced the last gradient");
        ddp.FinishGradients();
        double worst = 0;
        foreach (var (name, p) in full)
        {
            var want = p.Grad!.ToArray<double>();
            var got = replica[name].Grad!.ToArray<double>();
            double scale = want.Max(Math.Abs), err = want.Zip(got, (u, v) => Math.Abs(u - v)).Max();
            worst = Math.Max(worst, err / scale);
            Check(err <= 1e-6 * scale, $"{name}: DDP gradient differs from the full batch's by {err:E3} (scale {scale:E3})");
        }
        Console.WriteLine($"rank {r}: DDP gradients of two half batches vs the full batch: max relative difference {worst:E2} over {full.Count} tensors, {ddp.BucketCount} buckets");

        var opt = new AdamW(replica.Values, 1e-2);
        for (int step = 0; step < 3; step++)
        {
            opt.Step();
            opt.ZeroGrad();
            foreach (var (name, p) in replica)
            {
                var theirs = p.Value.Clone();
                g.Broadcast(theirs, 0);
                Check(theirs.ToArray<double>().SequenceEqual(p.Value.ToArray<double>()), $"step {step}: {name} differs bitwise from rank 0's");
            }
            var (i2, t2) = Tiny.Batch(batch, context, seed: 20 + step);
            Tiny.Loss(model, i2.AsSpan(r * rows * context, rows * context).ToArray(), t2.AsSpan(r * rows * context, rows * context).ToArray(), rows, context).Backward();
            ddp.FinishGradients();
        }
        Console.WriteLine($"rank {r}: parameters bitwise equal to rank 0's after each of 3 AdamW steps");
    }

    // A decoder split over the ranks (Megatron column/row-parallel) against the whole model in one process: float32
    // logits, with and without the KV cache, and float64 gradients through the f/g operators.
    static void TensorParallelCase(MpiProcessGroup g)
    {
        int r = g.Rank;
        var weights = Tiny.Weights(DType.Float32);
        var ids = Tensor.FromArray(new long[] { 3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5 }, new Shape(1, 11));
        var whole = new DecoderModel(Tiny.Config, weights);
        var split = new DecoderModel(Tiny.Config, DecoderWeights.Shard(Tiny.Config, weights, r, g.WorldSize), tensorParallel: g);
        using (Autograd.NoGrad())
        {
            var want = whole.Forward(ids).ToArray<float>();
            var got = split.Forward(ids).ToArray<float>();
            double scale = want.Max(v => Math.Abs((double)v)), err = want.Zip(got, (u, v) => Math.Abs((double)u - v)).Max();
            Console.WriteLine($"rank {r}: tensor-parallel logits vs one process: max |difference| {err:E2}, {err / scale:E2} of max |logit| {scale:F3}");
            Check(err <= 1e-5 * scale, $"tensor-parallel logits differ by {err:E3} (scale {scale:E3})");
            var logits = Tensor.FromArray(got);
            var theirs = logits.Clone();
            g.Broadcast(theirs, 0);
            Check(theirs.ToArray<float>().SequenceEqual(got), "ranks hold bitwise-equal logits");
        }
        var prompt = new[] { 3, 1, 4, 1 };
        Check(whole.Generate(prompt, 6).SequenceEqual(split.Generate(prompt, 6)), "greedy generation with the KV cache gives the same tokens");

        var w64 = Tiny.Weights(DType.Float64);
        var full = Parameters(w64);
        var mine = Parameters(DecoderWeights.Shard(Tiny.Config, w64, r, g.WorldSize));
        var (input, target) = Tiny.Batch(2, 5, seed: 3);
        Tiny.Loss(new DecoderModel(Tiny.Config, full.ToDictionary(kv => kv.Key, kv => kv.Value.Value), trainable: true), input, target, 2, 5).Backward();
        Tiny.Loss(new DecoderModel(Tiny.Config, mine.ToDictionary(kv => kv.Key, kv => kv.Value.Value), trainable: true, tensorParallel: g), input, target, 2, 5).Backward();
        foreach (var (name, p) in full)
        {
            var want = DecoderWeights.Shard(Tiny.Config, name, p.Grad!, r, g.WorldSize).ToArray<double>();
            var got = mine[name].Grad!.ToArray<double>();
            double scale = want.Max(Math.Abs), err = want.Zip(got, (u, v) => Math.Abs(u - v)).Max();
            Check(err <= 1e-12 * scale, $"{name}: tensor-parallel gradient differs by {err:E3} (scale {scale:E3})");
        }
        Console.WriteLine($"rank {r}: tensor-parallel float64 gradients equal the shards of one process's within 1e-12 relative");

        // The layers on their own: column- then row-parallel equals the two full linear layers.
        var gen = new Generator(5);
        var w1 = Tensor.Randn(new Shape(8, 6), gen, dtype: DType.Float64);
        var b1 = Tensor.Randn(new Shape(8), gen, dtype: DType.Float64);
        var w2 = Tensor.Randn(new Shape(3, 8), gen, dtype: DType.Float64);
        var b2 = Tensor.Randn(new Shape(3), gen, dtype: DType.Float64);
        var x = Tensor.Randn(new Shape(2, 4, 6), gen, dtype: DType.Float64);
        var column = new ColumnParallelLinear(g, w1, b1);
        var row = new RowParallelLinear(g, w2, b2);
        var y = row.Forward(column.Forward(x).Tanh());
        var yWant = (x.Reshape(8, 6).MatMul(w1.T) + b1).Tanh().MatMul(w2.T) + b2;
        Check(y.Shape == new Shape(2, 4, 3), $"row-parallel output shape {y.Shape}");
        double e2 = (y.Reshape(8, 3) - yWant).Abs().Max().Item();
        Check(e2 <= 1e-12 * yWant.Abs().Max().Item(), $"column/row-parallel pair differs from the full layers by {e2:E3}");
    }

    // Rank 1 dies before a collective; rank 0's watchdog must end its wait with a clear error.
    static int Fault(MpiProcessGroup g)
    {
        g.Barrier();
        if (g.Rank == 1)
        {
            Console.WriteLine("rank 1: dying before the all-reduce");
            Console.Out.Flush();
            Process.GetCurrentProcess().Kill();
        }
        var clock = Stopwatch.StartNew();
        try
        {
            g.AllReduce(new float[1 << 20]);
            Console.WriteLine("rank 0: the all-reduce completed without its peer");
            return 1;
        }
        catch (DistributedException e)
        {
            Console.WriteLine(FormattableString.Invariant($"rank 0 caught after {clock.Elapsed.TotalSeconds:F1} s: {e.GetType().Name}: {e.Message}"));
            Console.Out.Flush();
            return 3;
        }
    }
}
