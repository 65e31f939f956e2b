using Kiln.Kernels;
using Kiln.Kernels.Cpu;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// Outputs past the last-level cache are written with non-temporal stores after a head up to the vector width's
/// alignment (<see cref="Streaming"/>). Forced at small sizes, every lane-mapped activation gives the same bits as the
/// cached path, for any length and any misalignment of the output, rare-branch lanes included.
/// </summary>
[Collection(nameof(SerialCollection))]
public class StreamingTests
{
    [Fact]
    public void Streamed_activations_are_the_cached_bits_at_every_length_and_alignment()
    {
        UnaryOp[] ops = [UnaryOp.Silu, UnaryOp.GeluErf, UnaryOp.GeluTanh, UnaryOp.Erf];
        Props.Check(from len in G.Choose(0, 300) from offset in G.Choose(0, 17) from op in G.Elements(ops) from seed in TensorGen.Seed select (len, offset, op, seed), c =>
        {
            var (len, offset, op, seed) = c;
            var r = new Random(seed);
            // Mostly within [-4, 4], a tenth out to +-30 (GELU's and erf's tails run out of line), and the specials.
            var x = new float[len];
            for (int i = 0; i < len; i++)
                x[i] = r.Next(10) == 0 ? (float)(60 * r.NextDouble() - 30) : (float)(8 * r.NextDouble() - 4);
            if (len > 2) { x[r.Next(len)] = float.NaN; x[r.Next(len)] = float.NegativeInfinity; }
            var cached = new float[len + offset];
            var streamed = new float[len + offset];
            Elementwise.Unary(op, (ReadOnlySpan<float>)x, cached.AsSpan(offset, len));
            try
            {
                Streaming.ForcedMinBytes = 0;
                Elementwise.Unary(op, (ReadOnlySpan<float>)x, streamed.AsSpan(offset, len));
            }
            finally { Streaming.ForcedMinBytes = null; }
            for (int i = 0; i < len; i++)
                Assert.True(BitConverter.SingleToInt32Bits(cached[offset + i]) == BitConverter.SingleToInt32Bits(streamed[offset + i]),
                    $"{op}, {len} elements at offset {offset}: [{i}] = {x[i]:R} gave {streamed[offset + i]:R} streamed, {cached[offset + i]:R} cached");
        });
    }

    [Fact]
    public void Streamed_layer_norm_and_softmax_rows_are_the_cached_bits()
    {
        Props.Check(from rows in G.Choose(1, 5) from len in G.Choose(1, 90) from affine in G.Choose(0, 3) from seed in TensorGen.Seed select (rows, len, affine, seed), c =>
        {
            var (rows, len, affine, seed) = c;
            var r = new Random(seed);
            float[] R(int n, double scale) => Enumerable.Range(0, n).Select(_ => (float)(scale * (2 * r.NextDouble() - 1))).ToArray();
            var x = R(rows * len + 3, 5);
            float[]? w = (affine & 1) != 0 ? R(len, 2) : null, b = (affine & 2) != 0 ? R(len, 1) : null;
            if (rows > 1 && r.Next(3) == 0) x[3 + len + r.Next(len)] = float.NaN;   // a NaN row among finite ones
            float[] Run(Action<float[]> kernel, bool stream)
            {
                var y = new float[rows * len];
                try { Streaming.ForcedMinBytes = stream ? 0 : long.MaxValue; kernel(y); }
                finally { Streaming.ForcedMinBytes = null; }
                return y;
            }
            void Same(string what, Action<float[]> kernel)
            {
                float[] cached = Run(kernel, false), streamed = Run(kernel, true);
                for (int i = 0; i < cached.Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(cached[i]) == BitConverter.SingleToInt32Bits(streamed[i]),
                        $"{what} [{rows}, {len}]: [{i}] = {streamed[i]:R} streamed, {cached[i]:R} cached");
            }
            Same("layer norm", y => LayerNorm.Rows(x, 3, w, 0, b, 0, 1e-5f, rows, len, y));
            Same("softmax", y => Softmax.Rows(x, 3, rows, len, false, y));
        });
    }

    [Fact]
    public void Streamed_copies_are_exact_at_every_length_and_alignment()
    {
        Props.Check(from bytes in G.Choose(0, 700) from src in G.Choose(0, 70) from dst in G.Choose(0, 70) from seed in TensorGen.Seed select (bytes, src, dst, seed), c =>
        {
            var (n, so, d, seed) = c;
            var data = new byte[n + so];
            new Random(seed).NextBytes(data);
            var got = new byte[n + d + 5];
            try { Streaming.ForcedMinBytes = 0; Streaming.Copy<byte>(data.AsSpan(so, n), got.AsSpan(d, n), n); }
            finally { Streaming.ForcedMinBytes = null; }
            Assert.True(got.AsSpan(d, n).SequenceEqual(data.AsSpan(so, n)), $"{n} bytes from offset {so} to {d}");
            Assert.True(got.AsSpan(0, d).IndexOfAnyExcept((byte)0) < 0 && got.AsSpan(d + n).IndexOfAnyExcept((byte)0) < 0, $"{n} bytes to offset {d}: wrote outside");
            var wide = new double[n / 8 + 1];
            var wideGot = new double[wide.Length + 1];
            for (int i = 0; i < wide.Length; i++) wide[i] = i * 0.5 - 3;
            try { Streaming.ForcedMinBytes = 0; Streaming.Copy<double>(wide, wideGot.AsSpan(1), 8L * wide.Length); }
            finally { Streaming.ForcedMinBytes = null; }
            Assert.Equal(wide, wideGot[1..]);
        });
    }

    [Fact]
    public void Only_outputs_past_the_last_level_cache_stream()
    {
        Assert.False(Streaming.Pays(CpuCaches.L1Data));
        Assert.False(Streaming.Pays(CpuCaches.L2));
        Assert.True(Streaming.Pays(CpuCaches.L3));
    }
}
