using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Kiln.IO;
using Kiln.NN;
using Kiln.NN.Decoder;
using Kiln.Tests.NN.Decoder;
using Xunit;

namespace Kiln.Tests.IO;

/// <summary>
/// The cases a mutation campaign over the readers found (issue #19, item 9), each as a regression test: every one
/// must end in the reader's documented exception, promptly and without a large allocation.
/// </summary>
public class UntrustedInputTests
{
    static byte[] SafetensorsImage(string headerJson, int dataBytes = 0)
    {
        var h = Encoding.UTF8.GetBytes(headerJson);
        return [.. BitConverter.GetBytes((long)h.Length), .. h, .. new byte[dataBytes]];
    }

    static byte[] NpyImage(string dict)
    {
        string header = dict.PadRight(118) + "\n";
        return [0x93, .. "NUMPY"u8, 1, 0, .. BitConverter.GetBytes((ushort)header.Length), .. Encoding.Latin1.GetBytes(header)];
    }

    [Fact]
    public void A_lone_surrogate_escape_in_any_JSON_header_is_InvalidDataException()
    {
        Assert.Throws<InvalidDataException>(() => Safetensors.Deserialize(SafetensorsImage("""{"a\ud800": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}""")));
        Assert.Throws<InvalidDataException>(() => Safetensors.Deserialize(SafetensorsImage("""{"__metadata__": {"k": "\udc00"}}""")));
        Assert.Throws<InvalidDataException>(() => DecoderConfig.FromJson("""{"model_type": "llama\ud800"}"""));
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse("""{"model": {"type": "BPE", "vocab": {"\ud800": 0}}}"""));
        string dir = Directory.CreateTempSubdirectory().FullName;
        try
        {
            string index = Path.Combine(dir, "model.safetensors.index.json");
            File.WriteAllText(index, """{"weight_map": {"w": "\udfff.safetensors"}}""");
            Assert.Throws<InvalidDataException>(() => Safetensors.Load(index));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void An_empty_shape_whose_leading_extents_pass_2_31_is_InvalidDataException()
    {
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Deserialize(SafetensorsImage("""{"t": {"dtype": "F32", "shape": [1048576, 1048576, 0], "data_offsets": [0, 0]}}""")));
        Assert.Contains("[1048576, 1048576, 0]", e.Message);
        Assert.Throws<InvalidDataException>(() => Npy.Load(new MemoryStream(NpyImage("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536, 0), }"))));
        // A zero leading extent keeps the running product at zero, which a Shape accepts.
        Assert.Equal(0, Npy.Load(new MemoryStream(NpyImage("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 65536, 65536), }"))).Numel);
    }

    [Fact]
    public void Duplicate_keys_and_wrong_JSON_types_in_config_and_tokenizer_are_InvalidDataException()
    {
        Assert.Throws<InvalidDataException>(() => DecoderConfig.FromJson("""{"model_type": "llama", "model_type": "llama"}"""));
        Assert.Throws<InvalidDataException>(() => DecoderConfig.FromJson("""{"model_type": ["llama"]}"""));
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse("""{"model": {"type": "BPE", "vocab": {"a": 0, "a": 1}}}"""));
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse("""{"model": {"type": 7, "vocab": {"a": 0}}}"""));
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse("""{"model": {"type": "BPE", "vocab": {"a": 0}, "unk_token": {}}}"""));
    }

    static string WithSplit(string pattern)
    {
        var json = JsonNode.Parse(HfTokenizer.ByteLevelJson([]))!;
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = pattern }, ["behavior"] = "Isolated" };
        return json.ToJsonString();
    }

    [Theory]
    [InlineData(@"\s*")]
    [InlineData(@"a|")]
    [InlineData(@"\b")]
    [InlineData(@"(?=\p{L})")]
    public void A_pre_tokenizer_regex_that_matches_the_empty_string_is_refused(string pattern)
    {
        var e = Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse(WithSplit(pattern)));
        Assert.Contains("empty string", e.Message);
    }

    [Fact]
    public void A_catastrophically_backtracking_pre_tokenizer_times_out_instead_of_hanging()
    {
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse(WithSplit("(")));
        var tok = HfTokenizer.Parse(WithSplit(@"(\w+\s?)+$|\S"), limits: new ReadLimits { RegexMatchTimeout = TimeSpan.FromMilliseconds(100) });
        Assert.Equal(Encoding.UTF8.GetBytes("ok!").Select(b => (int)b), tok.EncodeToIds("ok!"));
        Assert.Throws<RegexMatchTimeoutException>(() => tok.EncodeToIds(string.Concat(Enumerable.Repeat("word ", 40)) + "!"));
        Assert.Throws<ArgumentOutOfRangeException>(() => HfTokenizer.Parse(WithSplit(@"\S"), limits: new ReadLimits { RegexMatchTimeout = TimeSpan.Zero }));
    }

    [Fact]
    public void A_config_claiming_a_huge_model_fails_on_the_weights_before_allocating()
    {
        var c = DecoderTests.Tiny("llama");
        var w = DecoderTests.Weights(c, 1, DType.Float32);
        foreach (var (key, value) in new[] { ("num_hidden_layers", 2_000_000_000), ("vocab_size", 2_000_000_000), ("hidden_size", 1 << 30) })
        {
            var json = JsonNode.Parse(c.ToJson())!;
            json[key] = value;
            long before = GC.GetAllocatedBytesForCurrentThread();
            var e = Assert.Throws<InvalidDataException>(() => new DecoderModel(DecoderConfig.FromJson(json.ToJsonString()), w));
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated < 16 << 20, $"{key} = {value}: {allocated} bytes allocated before failing with: {e.Message}");
        }
    }

    [Fact]
    public void A_config_value_out_of_double_range_is_refused_so_every_loaded_config_writes_back()
    {
        var json = JsonNode.Parse(DecoderTests.Tiny("llama").ToJson())!;
        json["rope_theta"] = JsonValue.Create(1e300);
        Assert.Equal(1e300, DecoderConfig.FromJson(DecoderConfig.FromJson(json.ToJsonString()).ToJson()).RopeTheta);
        json["rope_theta"] = 31415;
        var e = Assert.Throws<InvalidDataException>(() => DecoderConfig.FromJson(json.ToJsonString().Replace("31415", "1e309")));
        Assert.Contains("rope_theta", e.Message);
    }

    [Fact]
    public void An_empty_tensor_name_is_refused_since_it_could_not_be_saved_back()
    {
        Assert.Throws<ArgumentException>(() => Safetensors.Serialize(new Dictionary<string, Tensor> { [""] = Tensor.Zeros(new Shape(1)) }));
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Deserialize(SafetensorsImage("""{"": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", 4)));
        Assert.Contains("empty name", e.Message);
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        using (var s = zip.CreateEntry(".npy").Open())
            Npy.Save(s, Tensor.Zeros(new Shape(2)));
        ms.Position = 0;
        Assert.Contains("empty name", Assert.Throws<InvalidDataException>(() => Npz.Load(ms)).Message);
    }

    static MemoryStream NpzOf(Tensor t, CompressionLevel level)
    {
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        using (var s = zip.CreateEntry("x.npy", level).Open())
            Npy.Save(s, t);
        ms.Position = 0;
        return ms;
    }

    [Fact]
    public void An_npz_member_that_expands_past_the_limit_is_refused_before_inflating()
    {
        // 8 MiB of zeros deflate to a few KiB.
        var bomb = NpzOf(Tensor.Zeros(new Shape(1 << 21)), CompressionLevel.Optimal);
        Assert.True(bomb.Length < 64 << 10);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => Npz.Load(bomb, new ReadLimits { MaxDecompressedBytes = 1 << 20 }));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "the member was inflated before its size was checked");
        Assert.Contains("MaxDecompressedBytes", e.Message);
        bomb.Position = 0;
        Assert.Equal(1 << 21, Npz.Load(bomb)["x"].Numel);
    }

    [Fact]
    public void A_flipped_bit_in_npz_member_data_fails_its_CRC()
    {
        var t = Tensor.FromArray(new[] { 1.0f, 2.0f, 3.0f, 4.0f });
        var bytes = NpzOf(t, CompressionLevel.NoCompression).ToArray();
        Assert.Equal(t.ToArray<float>(), Npz.Load(new MemoryStream(bytes))["x"].ToArray<float>());
        // The stored member's last data byte is the high byte of 4.0f, just before the central directory.
        int at = bytes.AsSpan().IndexOf(BitConverter.GetBytes(4.0f)) + 3;
        bytes[at] ^= 0x01;
        Assert.Contains("CRC", Assert.Throws<InvalidDataException>(() => Npz.Load(new MemoryStream(bytes))).Message);
    }

    [Fact]
    public void A_safetensors_file_that_shrinks_after_opening_fails_cleanly()
    {
        string path = Path.GetTempFileName();
        try
        {
            Safetensors.Save(path, new Dictionary<string, Tensor> { ["a"] = Tensor.Ones(new Shape(4096)), ["b"] = Tensor.Ones(new Shape(4096)) });
            using var f = SafetensorsFile.Open(path);
            Assert.Equal(4096, f.Get("a").Numel);
            using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) fs.SetLength(fs.Length / 2);
            Assert.Contains("changed underneath", Assert.Throws<InvalidDataException>(() => f.Get("b")).Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void A_gzipped_csv_that_expands_past_the_limit_is_refused()
    {
        string path = Path.GetTempFileName() + ".csv.gz";
        try
        {
            using (var gz = new GZipStream(File.Create(path), CompressionLevel.Optimal))
                for (int i = 0; i < 20000; i++) gz.Write("1,2,3,4,5,6,7,8\n"u8);
            Assert.True(new FileInfo(path).Length < 16 << 10);
            Assert.Equal(20000, Csv.Load(path).Features.Shape[0]);
            var e = Assert.Throws<InvalidDataException>(() => Csv.Load(path, new CsvOptions { Limits = new ReadLimits { MaxDecompressedBytes = 100_000 } }));
            Assert.Contains("MaxDecompressedBytes", e.Message);
        }
        finally { File.Delete(path); }
    }
}
