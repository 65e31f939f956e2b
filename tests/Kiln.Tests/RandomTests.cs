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
        // Normals go through log, sin and cos: bit-identical where the kernels call .NET's Math (CPU, ILGPU's CPU
        // accelerator); elsewhere within the device libm's bounds (OpenCL C 1.2 section 7.4 and CUDA: log <= 3 ulp,
        // sin/cos <= 4 ulp, sqrt correctly rounded), which compound to at most 8 ulp of r*cos(t); 16 leaves one rounding to spare.
        bool hostMath = dev.Kind is DeviceKind.Cpu or DeviceKind.IlgpuCpu;
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            // Uniforms are integer arithmetic and one scaling: identical everywhere.
            Assert.Equal(Tensor.Rand([1001], new Generator(9), -1, 3, dtype).ToDoubleArray(), Tensor.Rand([1001], new Generator(9), -1, 3, dtype, dev).ToDoubleArray());
            var cpu = Tensor.Randn([1001], new Generator(9), dtype: dtype).ToDoubleArray();
            var got = Tensor.Randn([1001], new Generator(9), dtype: dtype, device: dev).ToDoubleArray();
            if (hostMath) Assert.Equal(cpu, got);
            else
            {
                double eps = dtype == DType.Float32 ? Math.Pow(2, -23) : Math.Pow(2, -52);
                for (int i = 0; i < cpu.Length; i++)
                    Assert.True(Math.Abs(got[i] - cpu[i]) <= 16 * eps * Math.Abs(cpu[i]), $"{device} {dtype} element {i}: {got[i]:R} vs cpu {cpu[i]:R}");
            }
            // Element i depends only on (seed, counter, i): a prefix of a longer draw is the shorter draw.
            Assert.Equal(got.Take(77), Tensor.Randn([77], new Generator(9), dtype: dtype, device: dev).ToDoubleArray());
        }
        var g = new Generator(5);
        var a = Tensor.Rand([10], g).ToDoubleArray();
        var b = Tensor.Rand([10], g).ToDoubleArray();
        Assert.NotEqual(a, b);   // the counter advanced
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float16)]
    public void Moments_are_right(DType dtype)
    {
        const int n = 200_000;
        var u = Tensor.Rand([n], new Generator(1), 2, 5, dtype).ToDoubleArray();
        Assert.InRange(u.Min(), 2, 5); Assert.True(u.Max() < 5);
        Assert.Equal(3.5, u.Average(), 1e-2);                        // sd of the mean 0.002
        var z = Tensor.Randn([n], new Generator(2), 1, 2, dtype).ToDoubleArray();
        double m = z.Average(), v = z.Sum(x => (x - m) * (x - m)) / n;
        Assert.Equal(1.0, m, 1e-1); Assert.Equal(4.0, v, 1e-1);
        Assert.Equal(0.3, Tensor.Bernoulli([n], 0.3, new Generator(3), dtype).ToDoubleArray().Average(), 1e-2);
        var r = Tensor.RandInt([n], -3, 4, new Generator(4)).ToArray<long>();
        Assert.Equal(Enumerable.Range(-3, 7).Select(i => (long)i), r.Distinct().Order());
        var p = Tensor.RandPerm(50, new Generator(6)).ToArray<long>();
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), p.Order());
    }
}
