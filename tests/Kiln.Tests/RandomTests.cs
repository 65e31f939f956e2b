using Kiln.Kernels.Cpu;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>The Philox generator: known-answer vectors, order independence, distribution moments, same numbers on every device.</summary>
public class RandomTests
{
    [Fact]
    public void Philox_matches_random123_known_answers()
    {
        // Random123's kat_vectors for philox4x32_10.
        Assert.Equal((0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u), Philox.Block(0, 0, 0, 0, 0, 0));
        Assert.Equal((0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu), Philox.Block(~0u, ~0u, ~0u, ~0u, ~0u, ~0u));
        Assert.Equal((0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u),
            Philox.Block(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0));
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Same_seed_same_numbers_on_every_device_and_split(string device)
    {
        var dev = Devices.Parse(device);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var cpu = Tensor.Randn([1001], new Generator(9), dtype: dtype).ToDoubleArray();
            Assert.Equal(cpu, Tensor.Randn([1001], new Generator(9), dtype: dtype, device: dev).ToDoubleArray());
            // Element i depends only on (seed, counter, i): a prefix of a longer draw is the shorter draw.
            Assert.Equal(cpu.Take(77), Tensor.Randn([77], new Generator(9), dtype: dtype, device: dev).ToDoubleArray());
        }
        var g = new Generator(5);
        var a = Tensor.Rand([10], g).ToDoubleArray();
        var b = Tensor.Rand([10], g).ToDoubleArray();
        Assert.NotEqual(a, b);   // the counter advanced
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void Moments_are_right(DType dtype)
    {
        const int n = 200_000;
        var u = Tensor.Rand([n], new Generator(1), 2, 5, dtype).ToDoubleArray();
        Assert.InRange(u.Min(), 2, 5); Assert.True(u.Max() < 5);
        Assert.Equal(3.5, u.Average(), 2);                        // sd of the mean 0.002
        var z = Tensor.Randn([n], new Generator(2), 1, 2, dtype).ToDoubleArray();
        double m = z.Average(), v = z.Sum(x => (x - m) * (x - m)) / n;
        Assert.Equal(1.0, m, 1); Assert.Equal(4.0, v, 1);
        Assert.Equal(0.3, Tensor.Bernoulli([n], 0.3, new Generator(3), dtype).ToDoubleArray().Average(), 2);
        var r = Tensor.RandInt([n], -3, 4, new Generator(4)).ToArray<long>();
        Assert.Equal(Enumerable.Range(-3, 7).Select(i => (long)i), r.Distinct().Order());
        var p = Tensor.RandPerm(50, new Generator(6)).ToArray<long>();
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), p.Order());
    }
}
