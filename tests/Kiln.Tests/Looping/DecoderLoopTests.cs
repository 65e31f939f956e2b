using Kiln.Methods.Looping;
using Kiln.NN.Decoder;
using Kiln.Tests.NN.Decoder;
using Kiln.Tests.TestKit;
using Xunit;
using static Kiln.Tests.NN.Decoder.DecoderTests;

namespace Kiln.Tests.Looping;

/// <summary>Loop options on real decoders (dense Qwen3 and the MoE/MLA checkpoints): bit-identity at K = 1 and without the
/// loop, the cache and decode options, and devices.</summary>
public class DecoderLoopTests
{
    // A looped forward with a cache gives the CPU's logits on any device.
    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Looped_decoding_on_every_device_matches_the_cpu(string device)
    {
        var dev = Devices.Parse(device);
        var c = Tiny("qwen3", tie: true);
        var w = Weights(c, 4, DType.Float32);
        var onDevice = new DecoderModel(c, w.ToDictionary(kv => kv.Key, kv => kv.Value.To(dev)));
        var loop = new LoopOptions(1, 2, 3);
        var cpu = new DecoderModel(c, w);
        var (cacheCpu, cacheDev) = (new KvCache(c.Layers), new KvCache(c.Layers));
        var ids = Ids(Seqs);
        cpu.Forward(ids.Narrow(1, 0, 5), cacheCpu, loop);
        onDevice.Forward(ids.Narrow(1, 0, 5).To(dev), cacheDev, loop);
        Close.Check(cpu.Forward(ids.Narrow(1, 5, 2), cacheCpu, loop).ToDoubleArray(),
            onDevice.Forward(ids.Narrow(1, 5, 2).To(dev), cacheDev, loop).To(Device.Cpu).ToDoubleArray(), 1e-4, 1e-5, $"{device}, looped decoding");
    }

    public static IEnumerable<object[]> RulesModes =>
        from r in Enum.GetValues<LoopRule>() from m in Enum.GetValues<LoopMode>() select new object[] { r, m };

    [Theory, MemberData(nameof(RulesModes))]
    public void K_1_loop_gives_bit_identical_logits(LoopRule rule, LoopMode mode)
    {
        var model = Qwen3();
        var plain = model.Forward(Ids(Seqs)).ToArray<float>();
        Assert.Equal(plain, model.Forward(Ids(Seqs), null, new LoopOptions(1, 2, 1, rule) { Mode = mode }).ToArray<float>());
    }

    [Fact]
    public void Removing_the_loop_restores_bit_identical_logits()
    {
        var model = Qwen3();
        var before = model.Forward(Ids(Seqs)).ToArray<float>();
        var looped = model.Forward(Ids(Seqs), null, new LoopOptions(1, 2, 4, LoopRule.Naive)).ToArray<float>();
        Assert.NotEqual(before, looped);
        Assert.Equal(before, model.Forward(Ids(Seqs)).ToArray<float>());
    }

    [Theory]
    [InlineData(LoopCache.First, LoopMode.Block)] [InlineData(LoopCache.Last, LoopMode.Block)]
    [InlineData(LoopCache.First, LoopMode.Layer)] [InlineData(LoopCache.Last, LoopMode.Layer)]
    public void Cache_length_after_a_looped_prefill_equals_the_plain_models(LoopCache mode, LoopMode loopMode)
    {
        var model = Qwen3();
        var plain = model.NewCache(); var looped = model.NewCache();
        model.Forward(Ids(Seqs), plain);
        model.Forward(Ids(Seqs), looped, new LoopOptions(1, 2, 3) { Cache = mode, Mode = loopMode });
        Assert.Equal(plain.Position, looped.Position);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(plain.Length(i), looped.Length(i));
            Assert.Equal(plain.Get(i).Keys!.Shape, looped.Get(i).Keys!.Shape);
        }
        // cache=first writes the window from x0: the window's first layer holds exactly the plain model's keys.
        var same = plain.Get(1).Keys!.ToArray<float>().SequenceEqual(looped.Get(1).Keys!.ToArray<float>());
        Assert.Equal(mode == LoopCache.First, same);
    }

    [Fact]
    public void Cache_none_leaves_the_window_without_entries()
    {
        var model = Qwen3();
        var cache = model.NewCache();
        model.Forward(Ids(Seqs), cache, new LoopOptions(1, 2, 3) { Cache = LoopCache.None });
        Assert.Equal([7, 0, 0, 7], Enumerable.Range(0, 4).Select(cache.Length));
        model.Forward(Ids(Seqs).Narrow(1, 0, 1), cache, new LoopOptions(1, 2, 3) { Cache = LoopCache.None, Decode = LoopDecode.Bypass });
        Assert.Equal([8, 1, 1, 8], Enumerable.Range(0, 4).Select(cache.Length));
    }

    [Fact]
    public void Bypass_decoding_equals_the_plain_models_and_full_does_not()
    {
        var model = Qwen3();
        var loop = new LoopOptions(1, 2, 3);
        var cache = model.NewCache();
        model.Forward(Ids(Seqs), cache, loop with { Decode = LoopDecode.Bypass });
        var next = Ids(Seqs).Narrow(1, 2, 1);
        var plain = model.Forward(next, cache.Clone()).ToArray<float>();
        Assert.Equal(plain, model.Forward(next, cache.Clone(), loop with { Decode = LoopDecode.Bypass }).ToArray<float>());
        Assert.NotEqual(plain, model.Forward(next, cache.Clone(), loop).ToArray<float>());
        // first_n: the first decoding step after the prompt loops, the second does not.
        var firstN = loop with { Decode = LoopDecode.FirstN, FirstN = 1 };
        var c2 = cache.Clone();
        Assert.Equal(model.Forward(next, cache.Clone(), loop).ToArray<float>(), model.Forward(next, c2, firstN).ToArray<float>());
        Assert.Equal(model.Forward(next, c2.Clone()).ToArray<float>(), model.Forward(next, c2, firstN).ToArray<float>());
    }

    [Theory, MemberData(nameof(SparseDecoderTests.Names), MemberType = typeof(SparseDecoderTests))]
    public void Layer_mode_is_the_default_and_K_1_is_bit_identical_for_every_rule(string name)
    {
        var (model, _) = SparseDecoderTests.Load(name, 4, DType.Float32);
        Assert.Equal(LoopMode.Layer, Looper.DefaultMode(model.Config));
        var plain = model.Forward(Ids(Seqs)).ToArray<float>();
        foreach (var rule in Enum.GetValues<LoopRule>())
            foreach (var mode in new LoopMode?[] { null, LoopMode.Layer, LoopMode.Block })
                Assert.Equal(plain, model.Forward(Ids(Seqs), null, new LoopOptions(1, 2, 1, rule) { Mode = mode }).ToArray<float>());
        // The default mode is layer mode: a K = 3 loop without a mode equals the explicit layer-mode loop, not the block one.
        var loop = new LoopOptions(1, 2, 3);
        var byDefault = model.Forward(Ids(Seqs), null, loop).ToArray<float>();
        Assert.Equal(model.Forward(Ids(Seqs), null, loop with { Mode = LoopMode.Layer }).ToArray<float>(), byDefault);
        Assert.NotEqual(model.Forward(Ids(Seqs), null, loop with { Mode = LoopMode.Block }).ToArray<float>(), byDefault);
        Assert.NotEqual(plain, byDefault);
        Assert.Equal(plain, model.Forward(Ids(Seqs)).ToArray<float>());
    }

    [Theory, MemberData(nameof(SparseDecoderTests.Names), MemberType = typeof(SparseDecoderTests))]
    public void Cache_and_decode_options_work_on_the_sparse_layers(string name)
    {
        var (model, _) = SparseDecoderTests.Load(name, 5, DType.Float32);
        var loop = new LoopOptions(1, 2, 3);
        var plain = model.NewCache();
        model.Forward(Ids(Seqs), plain);
        foreach (var mode in new[] { LoopCache.First, LoopCache.Last })
        {
            var looped = model.NewCache();
            model.Forward(Ids(Seqs), looped, loop with { Cache = mode });
            for (int i = 0; i < 4; i++) Assert.Equal(plain.Get(i).Keys!.Shape, looped.Get(i).Keys!.Shape);
            // cache=first writes the window from x0: its first layer holds exactly the plain model's keys and values.
            Assert.Equal(mode == LoopCache.First, plain.Get(1).Keys!.ToArray<float>().SequenceEqual(looped.Get(1).Keys!.ToArray<float>()));
            Assert.Equal(mode == LoopCache.First, plain.Get(1).Values!.ToArray<float>().SequenceEqual(looped.Get(1).Values!.ToArray<float>()));
        }
        var none = model.NewCache();
        model.Forward(Ids(Seqs), none, loop with { Cache = LoopCache.None });
        Assert.Equal([7, 0, 0, 7], Enumerable.Range(0, 4).Select(none.Length));

        var cache = model.NewCache();
        model.Forward(Ids(Seqs), cache, loop with { Decode = LoopDecode.Bypass });
        var next = Ids(Seqs).Narrow(1, 2, 1);
        var step = model.Forward(next, cache.Clone()).ToArray<float>();
        Assert.Equal(step, model.Forward(next, cache.Clone(), loop with { Decode = LoopDecode.Bypass }).ToArray<float>());
        var looping = model.Forward(next, cache.Clone(), loop).ToArray<float>();
        Assert.NotEqual(step, looping);
        var firstN = loop with { Decode = LoopDecode.FirstN, FirstN = 1 };
        var c2 = cache.Clone();
        Assert.Equal(looping, model.Forward(next, c2, firstN).ToArray<float>());
        Assert.Equal(model.Forward(next, c2.Clone()).ToArray<float>(), model.Forward(next, c2, firstN).ToArray<float>());
    }
}
