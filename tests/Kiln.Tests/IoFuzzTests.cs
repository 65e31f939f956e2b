using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Kiln.IO;
using Kiln.NN;
using Kiln.NN.Decoder;
using Kiln.Tests.NN.Decoder;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests;

/// <summary>
/// Feeds mutated images of every reader's files (safetensors in memory, on disk and sharded; npy; npz; CSV; config.json;
/// tokenizer.json; a checkpoint's config against its weights) to the readers: bit flips, truncations, edits of header
/// text and length fields, splices, and for JSON and CSV inserted hostile tokens (lone surrogate escapes, 1e309, huge
/// counts, regexes that match nothing or backtrack). Every input must parse, and then write back, or throw the
/// reader's documented exception; no case may run past the hang bound or allocate more than 4x its size plus the
/// reader's stated limits and a fixed allowance. The default run is a smoke test of a few hundred cases per reader;
/// KILN_FUZZ=N runs N cases per reader with the 2 s hang bound (for example KILN_FUZZ=100000). A case past the bound is
/// rerun once after it ends: a scheduling stall passes the second time, a hang fails.
/// </summary>
public class IoFuzzTests(ITestOutputHelper output)
{
    static readonly int? Campaign = int.TryParse(Environment.GetEnvironmentVariable("KILN_FUZZ"), out int n) && n > 0 ? n : null;

    // Under KILN_FUZZ every reader gets the campaign's count; the default run keeps its smoke count.
    static int Count(int smoke) => Campaign ?? smoke;

    // 2 s is the campaign's bound; the default run shares a loaded CI machine, where only a hang exceeds 20 s.
    static TimeSpan HangBound => Campaign is null ? TimeSpan.FromSeconds(20) : TimeSpan.FromSeconds(2);

    // How long a case past the hang bound may take to finish before it counts as a hang without a second run.
    static readonly TimeSpan StallLimit = TimeSpan.FromSeconds(60);

    // Bookkeeping every reader may allocate beyond 4x its input: JSON documents, a compiled regex, a tokenizer's
    // tables, exception messages.
    const long FixedAllowance = 8 << 20;

    static readonly byte[] HeaderChars = Encoding.ASCII.GetBytes("{}[],:\"0123456789-+.eE ntrufalsF3246IBOL_x");

    static readonly string[] HostileTokens =
    [
        "\\ud800", "\\udfff", "1e309", "-1e309", "2147483647", "2000000000", "-1", "0", "99999999999999999999", "null", "[]", "{}", "\"\"",
        "\"(a+)+$\"", "\"\\\\s*\"", "\"\\\\b\"", "\"(\"", "true", "\"x\": 1, ", "\u00e9", ",", "\n", "?", "nan", "1e5",
    ];

    // One mutation of `seed`: a few bit flips, a truncation, a header-text edit, a rewritten length field or a splice;
    // for text formats also an inserted hostile token or a copied span (which duplicates keys).
    static byte[] Mutate(byte[] seed, Random rng, int headerStart, int headerEnd, bool text = false)
    {
        var b = (byte[])seed.Clone();
        switch (rng.Next(text ? 10 : 7))
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
            case 6:
            {
                int i = rng.Next(b.Length), n = Math.Min(rng.Next(1, 16), b.Length - i);
                return [.. b[..i], .. b[(i + n)..]];
            }
            case 7:
            case 8:
            {
                // Replace a short span (often a value) by a hostile token.
                int i = rng.Next(b.Length), n = Math.Min(rng.Next(0, 8), b.Length - i);
                return [.. b[..i], .. Encoding.UTF8.GetBytes(HostileTokens[rng.Next(HostileTokens.Length)]), .. b[(i + n)..]];
            }
            default:
            {
                int from = rng.Next(b.Length), n = Math.Min(rng.Next(1, 64), b.Length - from), to = rng.Next(b.Length);
                return [.. b[..to], .. b.AsSpan(from, n), .. b[to..]];
            }
        }
    }

    // Runs `count` mutations of `seed` through `parse` (which also writes back what it read); `documented` says which
    // exceptions the reader documents. `limits` is the reader's stated limit in bytes, added to the allocation bound.
    (int Cases, int Parsed) Fuzz(string what, byte[] seed, int headerStart, int headerEnd, Action<byte[]> parse, int rngSeed, int count,
        Func<Exception, bool>? documented = null, long limits = 0, bool text = false)
    {
        documented ??= e => e is InvalidDataException;
        var rng = new Random(rngSeed);
        var total = Stopwatch.StartNew();
        int cases = 0, parsed = 0, stalls = 0;
        long maxAllocated = 0;
        // On its own thread, so a hang fails the test instead of stalling it, and the thread's allocation counter sees
        // only this case.
        Task<(Exception? Error, long Allocated)> Start(byte[] input) => Task.Factory.StartNew(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            Exception? error = null;
            try { parse(input); }
            catch (Exception e) { error = e; }
            return (error, GC.GetAllocatedBytesForCurrentThread() - before);
        }, TaskCreationOptions.LongRunning);
        while (cases < count)
        {
            var input = Mutate(seed, rng, headerStart, headerEnd, text);
            cases++;
            var run = Start(input);
            if (!run.Wait(HangBound))
            {
                // On a loaded machine (a niced campaign beside builds) a case can be descheduled past the bound. A stall
                // ends soon and the same input then runs within the bound; a hang does neither.
                if (!run.Wait(StallLimit))
                    Assert.Fail($"{what} case {cases} (rng seed {rngSeed}) ran past {StallLimit.TotalSeconds} s\ninput: {Convert.ToBase64String(input)}");
                run = Start(input);
                if (!run.Wait(HangBound))
                    Assert.Fail($"{what} case {cases} (rng seed {rngSeed}) ran past {HangBound.TotalSeconds} s twice\ninput: {Convert.ToBase64String(input)}");
                stalls++;
            }
            var (err, allocated) = run.Result;
            if (err is null) parsed++;
            else if (!documented(err))
                Assert.Fail($"{what} case {cases} (rng seed {rngSeed}): {err.GetType().Name} escaped: {err.Message}\ninput: {Convert.ToBase64String(input)}\n{err.StackTrace}");
            long bound = 4L * input.Length + limits + FixedAllowance;
            Assert.True(allocated <= bound, $"{what} case {cases} (rng seed {rngSeed}) allocated {allocated} bytes, past {bound}\ninput: {Convert.ToBase64String(input)}");
            maxAllocated = Math.Max(maxAllocated, allocated);
        }
        output.WriteLine($"{what}: {cases} mutated inputs in {total.Elapsed.TotalSeconds:F2} s, {parsed} parsed and written back, the rest rejected " +
            $"with a documented exception; at most {maxAllocated} bytes allocated by one case; {stalls} past the hang bound once and within it when rerun");
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
        var (cases, parsed) = Fuzz("safetensors", seed, 8, headerEnd, b => Safetensors.Serialize(Safetensors.Deserialize(b)), 20261123, count: Count(4000));
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
                Safetensors.Serialize(f.LoadAll(), f.Metadata);
            }, 7, count: Count(300));
            Assert.Equal(Count(300), cases);
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
        var (cases, parsed) = Fuzz("npy", npy, 10, headerEnd, b => Npy.Save(new MemoryStream(), Npy.Load(new MemoryStream(b))), 11, count: Count(4000));
        Assert.True(parsed < cases, "every npy mutation parsed");

        string path = Path.GetTempFileName();
        try
        {
            Npz.Save(path, new Dictionary<string, Tensor> { ["a"] = IoTests.Sample(DType.Int32, [4], 1), ["b"] = IoTests.Sample(DType.Bool, [3], 2) }, compressed: true);
            var npz = File.ReadAllBytes(path);
            var limits = new ReadLimits { MaxDecompressedBytes = 1 << 20 };
            (cases, _) = Fuzz("npz", npz, 0, npz.Length, b => Npz.Save(path + ".back", Npz.Load(new MemoryStream(b), limits)), 13, count: Count(4000),
                limits: limits.MaxDecompressedBytes);
            Assert.Equal(Count(4000), cases);
        }
        finally { File.Delete(path); File.Delete(path + ".back"); }
    }

    static int SmokeCount => Count(200);

    [Fact]
    public void Mutated_sharded_indexes_only_ever_throw_InvalidDataException_or_FileNotFoundException()
    {
        string dir = Directory.CreateTempSubdirectory().FullName;
        try
        {
            var tensors = new Dictionary<string, Tensor>
            {
                ["a"] = IoTests.Sample(DType.Float32, [3], 1), ["b"] = IoTests.Sample(DType.Int64, [2], 2), ["c"] = IoTests.Sample(DType.Float16, [2, 2], 3),
            };
            string index = Safetensors.SaveSharded(dir, tensors, maxShardBytes: 16);
            var seed = File.ReadAllBytes(index);
            var (cases, _) = Fuzz("safetensors index", seed, 0, seed.Length, b =>
            {
                File.WriteAllBytes(index, b);
                Safetensors.Serialize(Safetensors.Load(index));
            }, 17, SmokeCount, e => e is InvalidDataException or FileNotFoundException, text: true);
            Assert.Equal(SmokeCount, cases);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Mutated_csv_only_ever_throws_InvalidDataException()
    {
        var seed = Encoding.UTF8.GetBytes("x0,x1,x2,y\n1.5,2,-3e2,0\n4,5.25,6,1\n7,8,9,2\n");
        var (cases, parsed) = Fuzz("csv", seed, 0, seed.Length, b =>
        {
            var d = Csv.Load(new StringReader(Encoding.UTF8.GetString(b)), new CsvOptions { LabelIndex = -1, LabelDType = DType.Float64 });
            Assert.Equal(d.Features.Shape[1], d.FeatureNames.Count);
        }, 19, SmokeCount, text: true);
        Assert.True(parsed < cases, "every csv mutation parsed");
    }

    static readonly Func<Exception, bool> InvalidOrUnsupported = e => e is InvalidDataException or NotSupportedException;

    [Fact]
    public void Mutated_configs_only_ever_throw_InvalidDataException_or_NotSupportedException_and_write_back()
    {
        var seed = Encoding.UTF8.GetBytes(DecoderTests.Tiny("llama", new RopeScaling("llama3", Factor: 8, OriginalMaxPositions: 40, LowFreqFactor: 1, HighFreqFactor: 4)).ToJson());
        var (cases, parsed) = Fuzz("config.json", seed, 0, seed.Length, b =>
        {
            var c = DecoderConfig.FromJson(Encoding.UTF8.GetString(b));
            Assert.Equal(c, DecoderConfig.FromJson(c.ToJson()));
        }, 23, SmokeCount, InvalidOrUnsupported, text: true);
        Assert.True(parsed < cases, "every config mutation parsed");
    }

    [Fact]
    public void Mutated_checkpoint_configs_load_or_fail_on_the_weights_without_allocating_what_they_claim()
    {
        var c = DecoderTests.Tiny("qwen3");
        var w = DecoderTests.Weights(c, 1, DType.Float32);
        var seed = Encoding.UTF8.GetBytes(c.ToJson());
        var ids = Tensor.FromArray(new long[] { 1, 2, 3 }, new Shape(1, 3));
        var (cases, _) = Fuzz("checkpoint", seed, 0, seed.Length, b =>
        {
            // A mutation of a value no weight's shape depends on (eps, RoPE, positions) loads and runs.
            var m = new DecoderModel(DecoderConfig.FromJson(Encoding.UTF8.GetString(b)), w);
            Assert.Equal(m.Config, DecoderConfig.FromJson(m.Config.ToJson()));
            Assert.Equal([1, 3, c.VocabSize], m.Forward(ids).Shape.ToArray());
        }, 29, SmokeCount, InvalidOrUnsupported, text: true);
        Assert.Equal(SmokeCount, cases);
    }

    [Fact]
    public void Mutated_tokenizers_only_ever_throw_InvalidDataException_or_NotSupportedException_and_encode_without_hanging()
    {
        var map = HfTokenizer.ByteToChar();
        var json = JsonNode.Parse(HfTokenizer.ByteLevelJson(["<|endoftext|>"]))!;
        json["model"]!["vocab"]![$"{map[' ']}t"] = 257;
        json["model"]!["vocab"]!["he"] = 258;
        json["model"]!["merges"] = new JsonArray($"{map[' ']} t", "h e");
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = @"(\w+)|\s+|[^\w\s]+" }, ["behavior"] = "Isolated" }),
        };
        var seed = Encoding.UTF8.GetBytes(json.ToJsonString());
        var limits = new ReadLimits { RegexMatchTimeout = TimeSpan.FromMilliseconds(200) };
        var (cases, parsed) = Fuzz("tokenizer.json", seed, 0, seed.Length, b =>
        {
            var tok = HfTokenizer.Parse(Encoding.UTF8.GetString(b), limits: limits);
            // Encoding may time out on a backtracking pattern, which Parse documents; it must not hang.
            try { tok.EncodeToIds("the heat, 12 the <|endoftext|> aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"); }
            catch (RegexMatchTimeoutException) { }
        }, 31, SmokeCount, InvalidOrUnsupported, text: true);
        Assert.True(parsed < cases, "every tokenizer mutation parsed");
    }
}
