using System.Diagnostics;
using System.Text;
using Kiln.IO;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests;

/// <summary>
/// Feeds thousands of mutated safetensors, npy and npz images (bit flips, truncations, edits of header text and length
/// fields; seeded, a fixed number of cases per format) to the parsers. Every input must either parse or throw
/// <see cref="InvalidDataException"/>: any other exception (an index out of range would be a read outside the buffer,
/// since every in-memory read is a bounds-checked span) fails the test, as does a parse that hangs.
/// </summary>
public class IoFuzzTests(ITestOutputHelper output)
{
    static readonly byte[] HeaderChars = Encoding.ASCII.GetBytes("{}[],:\"0123456789-+.eE ntrufalsF3246IBOL_x");

    // One mutation of `seed`: a few bit flips, a truncation, a header-text edit, a rewritten length field or a splice.
    static byte[] Mutate(byte[] seed, Random rng, int headerStart, int headerEnd)
    {
        var b = (byte[])seed.Clone();
        switch (rng.Next(7))
        {
            case 0:
                for (int k = rng.Next(1, 9); k > 0; k--) { int i = rng.Next(b.Length); b[i] ^= (byte)(1 << rng.Next(8)); }
                return b;
            case 1:
                return b[..rng.Next(b.Length)];
            case 2:
                for (int k = rng.Next(1, 4); k > 0; k--) b[rng.Next(headerStart, headerEnd)] = HeaderChars[rng.Next(HeaderChars.Length)];
                return b;
            case 3:
            {
                // Replace a run of digits in the header by a random, possibly huge or negative, number.
                int i = rng.Next(headerStart, headerEnd);
                while (i < headerEnd && !char.IsAsciiDigit((char)b[i])) i++;
                if (i == headerEnd) return b;
                int j = i;
                while (j < headerEnd && char.IsAsciiDigit((char)b[j])) j++;
                string num = rng.Next(4) switch
                {
                    0 => rng.NextInt64().ToString(),
                    1 => "-" + rng.Next(100),
                    2 => "18446744073709551616" + rng.Next(10),
                    _ => rng.Next(64).ToString(),
                };
                return [.. b[..i], .. Encoding.ASCII.GetBytes(num), .. b[j..]];
            }
            case 4:
            {
                // Lie in the length field (safetensors: 8 bytes at 0; npy: 2 bytes at 8).
                int at = headerStart == 8 ? 0 : 8, len = headerStart == 8 ? 8 : 2;
                var v = rng.Next(3) switch { 0 => rng.NextInt64(), 1 => (long)rng.Next(headerEnd + 64), _ => (long)(headerEnd - headerStart) + rng.Next(-8, 9) };
                BitConverter.GetBytes(v).AsSpan(0, len).CopyTo(b.AsSpan(at));
                return b;
            }
            case 5:
            {
                int i = rng.Next(b.Length), n = rng.Next(1, 16);
                return [.. b[..i], .. Enumerable.Range(0, n).Select(_ => (byte)rng.Next(256)), .. b[i..]];
            }
            default:
            {
                int i = rng.Next(b.Length), n = Math.Min(rng.Next(1, 16), b.Length - i);
                return [.. b[..i], .. b[(i + n)..]];
            }
        }
    }

    (int Cases, int Parsed) Fuzz(string what, byte[] seed, int headerStart, int headerEnd, Action<byte[]> parse, int rngSeed, int count)
    {
        var rng = new Random(rngSeed);
        var total = Stopwatch.StartNew();
        int cases = 0, parsed = 0;
        while (cases < count)
        {
            var input = Mutate(seed, rng, headerStart, headerEnd);
            cases++;
            var one = Stopwatch.StartNew();
            try { parse(input); parsed++; }
            catch (InvalidDataException) { }
            catch (Exception e)
            {
                Assert.Fail($"{what} case {cases} (rng seed {rngSeed}): {e.GetType().Name} escaped: {e.Message}\ninput: {Convert.ToBase64String(input)}");
            }
            // A generous bound that only a hang (a loop on a lying length) can exceed, even on a loaded machine.
            Assert.True(one.Elapsed.TotalSeconds < 20, $"{what} case {cases} took {one.Elapsed.TotalSeconds:F1} s");
        }
        output.WriteLine($"{what}: {cases} mutated inputs in {total.Elapsed.TotalSeconds:F2} s, {parsed} parsed, the rest rejected with InvalidDataException");
        return (cases, parsed);
    }

    static byte[] SafetensorsSeed() => Safetensors.Serialize(new Dictionary<string, Tensor>
    {
        ["embed.weight"] = IoTests.Sample(DType.Float32, [3, 4], 1),
        ["norm"] = IoTests.Sample(DType.BFloat16, [4], 2),
        ["ids"] = IoTests.Sample(DType.Int64, [2], 3),
        ["mask"] = IoTests.Sample(DType.Bool, [2, 2], 4),
        ["empty"] = IoTests.Sample(DType.Float16, [0, 5], 5),
    }, new Dictionary<string, string> { ["format"] = "pt" });

    [Fact]
    public void Mutated_safetensors_only_ever_throw_InvalidDataException()
    {
        var seed = SafetensorsSeed();
        int headerEnd = 8 + (int)BitConverter.ToInt64(seed, 0);
        var (cases, parsed) = Fuzz("safetensors", seed, 8, headerEnd, b => Safetensors.Deserialize(b), 20261123, count: 4000);
        Assert.True(parsed < cases, "every mutation parsed: the mutator is not reaching the validation");
    }

    [Fact]
    public void Mutated_safetensors_files_only_ever_throw_InvalidDataException_when_mapped()
    {
        // Fewer cases: each goes through a temporary file and a memory map.
        var seed = SafetensorsSeed();
        int headerEnd = 8 + (int)BitConverter.ToInt64(seed, 0);
        string path = Path.GetTempFileName();
        try
        {
            var (cases, _) = Fuzz("mapped safetensors", seed, 8, headerEnd, b =>
            {
                File.WriteAllBytes(path, b);
                using var f = SafetensorsFile.Open(path);
                f.LoadAll();
            }, 7, count: 300);
            Assert.Equal(300, cases);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Mutated_npy_and_npz_only_ever_throw_InvalidDataException()
    {
        var ms = new MemoryStream();
        Npy.Save(ms, IoTests.Sample(DType.Float64, [3, 2], 9));
        var npy = ms.ToArray();
        int headerEnd = 10 + BitConverter.ToUInt16(npy, 8);
        var (cases, parsed) = Fuzz("npy", npy, 10, headerEnd, b => Npy.Load(new MemoryStream(b)), 11, count: 4000);
        Assert.True(parsed < cases, "every npy mutation parsed");

        string path = Path.GetTempFileName();
        try
        {
            Npz.Save(path, new Dictionary<string, Tensor> { ["a"] = IoTests.Sample(DType.Int32, [4], 1), ["b"] = IoTests.Sample(DType.Bool, [3], 2) }, compressed: true);
            var npz = File.ReadAllBytes(path);
            (cases, _) = Fuzz("npz", npz, 0, npz.Length, b => Npz.Load(new MemoryStream(b)), 13, count: 4000);
            Assert.Equal(4000, cases);
        }
        finally { File.Delete(path); }
    }
}
