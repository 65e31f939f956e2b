using System.IO.Compression;
using System.Text;
using Kiln.IO;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>safetensors, npy/npz and CSV round trips, compatibility with the formats' writers, malformed-file errors, and the embedded data sets.</summary>
public class IoTests
{
    static readonly DType[] AllDTypes = [DType.Float32, DType.Float64, DType.Float16, DType.BFloat16, DType.Int32, DType.Int64, DType.Bool];

    // A tensor of any dtype with values spread over the dtype's range (Int64 beyond 2^53, so lossy paths would show).
    internal static Tensor Sample(DType dt, int[] shape, int seed)
    {
        var g = new Generator((ulong)seed);
        var s = new Shape(shape);
        return dt switch
        {
            DType.Int64 => Tensor.RandInt(s, long.MinValue / 2, long.MaxValue / 2, g),
            DType.Int32 => Tensor.RandInt(s, int.MinValue, int.MaxValue, g, DType.Int32),
            DType.Bool => Tensor.Bernoulli(s, 0.5, g, DType.Bool),
            _ => Tensor.Randn(s, g, 0, 100, DType.Float64).To(dt),
        };
    }

    // Bit-exact equality of dtype, shape and elements.
    internal static void SameTensor(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.DType == actual.DType, $"{what}: dtype {actual.DType}, expected {expected.DType}");
        Assert.True(expected.Shape == actual.Shape, $"{what}: shape {actual.Shape}, expected {expected.Shape}");
        switch (expected.DType)
        {
            case DType.Int64: Assert.Equal(expected.ToArray<long>(), actual.ToArray<long>()); break;
            case DType.BFloat16: Assert.Equal(expected.ToArray<ushort>(), actual.ToArray<ushort>()); break;
            case DType.Float16: Assert.Equal(expected.ToArray<Half>(), actual.ToArray<Half>()); break;
            default: Assert.Equal(expected.ToDoubleArray(), actual.ToDoubleArray()); break;
        }
    }

    static FsCheck.Gen<(DType DType, int[] Shape, TensorGen.ViewKind View)[]> TensorSets(DType[] dtypes) =>
        G.ListOf(from dt in G.Elements(dtypes) from s in TensorGen.Shape(4, 6) from v in TensorGen.View select (dt, s, v))
         .Select(l => l.Take(5).ToArray());

    // The sample viewed as the requested layout (a permuted or sliced view is written in row-major order of the view).
    static Tensor Viewed(DType dt, int[] shape, TensorGen.ViewKind view, int seed, Device dev)
    {
        var t = Sample(dt, shape, seed).To(dev);
        return view switch
        {
            TensorGen.ViewKind.Permuted when shape.Length >= 2 => Sample(dt, shape.Reverse().ToArray(), seed).To(dev).Permute(Enumerable.Range(0, shape.Length).Reverse().ToArray()),
            TensorGen.ViewKind.Sliced when shape.Length >= 1 => Sample(dt, [.. shape[..^1], shape[^1] * 2], seed).To(dev).Slice(-1, 0, null, 2),
            _ => t,
        };
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Safetensors_round_trips_every_dtype_and_shape(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(from set in TensorSets(AllDTypes) from seed in TensorGen.Seed from withMeta in G.Elements(true, false) select (set, seed, withMeta), c =>
        {
            var (set, seed, withMeta) = c;
            var tensors = set.Select((e, i) => ($"layer.{i}.{e.DType}", Viewed(e.DType, e.Shape, e.View, seed + i, dev))).ToDictionary(p => p.Item1, p => p.Item2);
            var meta = withMeta ? new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\"" } : null;
            var bytes = Safetensors.Serialize(tensors, meta);
            Assert.Equal(0, (BitConverter.ToInt64(bytes, 0) + 8) % 8);   // data starts 8-byte aligned
            var back = Safetensors.Deserialize(bytes);
            Assert.Equal(tensors.Keys.Order(), back.Keys.Order());
            foreach (var (k, t) in tensors) SameTensor(t, back[k], k);
            Assert.Equal((IEnumerable<KeyValuePair<string, string>>?)meta ?? [], Safetensors.ReadMetadata(bytes).OrderBy(p => p.Key));
        });
    }

    [Fact]
    public void Safetensors_file_save_load_and_lazy_open()
    {
        var dir = Directory.CreateTempSubdirectory("kiln-io-").FullName;
        try
        {
            var tensors = AllDTypes.Select((dt, i) => (dt, t: Sample(dt, [3, i + 1], i))).ToDictionary(p => p.dt.ToString(), p => p.t);
            string path = Path.Combine(dir, "model.safetensors");
            Safetensors.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
            var loaded = Safetensors.Load(path);
            foreach (var (k, t) in tensors) SameTensor(t, loaded[k], k);

            Tensor kept;
            using (var f = SafetensorsFile.Open(path))
            {
                Assert.Equal("pt", f.Metadata["format"]);
                Assert.Equal(tensors.Count, f.Entries.Count);
                var e = f.Entries.Single(x => x.Name == "BFloat16");
                Assert.Equal(DType.BFloat16, e.DType);
                Assert.Equal(new Shape(3, 4), e.Shape);
                kept = f["Float64"];
                Assert.Throws<KeyNotFoundException>(() => f.Get("missing"));
                f.Dispose();
                Assert.Throws<ObjectDisposedException>(() => f.Get("Float32"));
            }
            SameTensor(tensors["Float64"], kept, "a tensor copied out stays valid after the file is closed");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Safetensors_reads_the_reference_writers_layout()
    {
        // Laid out as the Hugging Face writer does: compact JSON, space padding, F32 then BF16 data back to back.
        string json = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]}}";
        json = json.PadRight((json.Length + 7) / 8 * 8);
        var ms = new MemoryStream();
        ms.Write(BitConverter.GetBytes((ulong)json.Length));
        ms.Write(Encoding.UTF8.GetBytes(json));
        ms.Write(BitConverter.GetBytes(1.5f)); ms.Write(BitConverter.GetBytes(-2f));
        ms.Write(BitConverter.GetBytes((ushort)0x3F80)); ms.Write(BitConverter.GetBytes((ushort)0xC040));
        var d = Safetensors.Deserialize(ms.ToArray());
        Assert.Equal(new double[] { 1.5, -2 }, d["a"].ToDoubleArray());
        Assert.Equal(DType.BFloat16, d["b"].DType);
        Assert.Equal(new double[] { 1, -3 }, d["b"].ToDoubleArray());
    }

    [Fact]
    public void Safetensors_shards_round_trip_through_the_index()
    {
        var dir = Directory.CreateTempSubdirectory("kiln-io-").FullName;
        try
        {
            var tensors = Enumerable.Range(0, 7).ToDictionary(i => $"w{i}", i => Sample(DType.Float32, [4, i + 1], i));
            string index = Safetensors.SaveSharded(dir, tensors, maxShardBytes: 48);
            Assert.True(Directory.GetFiles(dir, "model-*-of-*.safetensors").Length > 2);
            var back = Safetensors.Load(index);
            foreach (var (k, t) in tensors) SameTensor(t, back[k], k);

            File.WriteAllText(index, "{\"weight_map\": {\"w0\": \"../evil.safetensors\"}}");
            Assert.Contains("not a plain file name", Assert.Throws<InvalidDataException>(() => Safetensors.Load(index)).Message);
            File.WriteAllText(index, "{\"weight_map\": {\"nope\": \"model-00001-of-00007.safetensors\"}}");
            var files = Directory.GetFiles(dir, "model-00001-*.safetensors");
            File.WriteAllText(index, $"{{\"weight_map\": {{\"nope\": \"{Path.GetFileName(files[0])}\"}}}}");
            Assert.Contains("has no such tensor", Assert.Throws<InvalidDataException>(() => Safetensors.Load(index)).Message);
            File.WriteAllText(index, "{\"weight_map\": [");
            Assert.Throws<InvalidDataException>(() => Safetensors.Load(index));
        }
        finally { Directory.Delete(dir, true); }
    }

    static byte[] Image(string json, int dataBytes, long? declaredLength = null)
    {
        var ms = new MemoryStream();
        var h = Encoding.UTF8.GetBytes(json);
        ms.Write(BitConverter.GetBytes((ulong)(declaredLength ?? h.Length)));
        ms.Write(h);
        ms.Write(new byte[dataBytes]);
        return ms.ToArray();
    }

    static string E(string name, string dtype, string shape, long b, long e) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{b},{e}]}}";

    public static IEnumerable<object[]> MalformedSafetensors => new (string What, byte[] Bytes, string Message)[]
    {
        ("shorter than the length field", [1, 2, 3], "must start with an 8-byte header length"),
        ("header length past the end", Image("{}", 0, 4096), "runs past the end"),
        ("header length beyond the limit", Image("{}", 0, long.MaxValue), "exceeds the"),
        ("invalid JSON", Image("{\"a\":", 0), "not valid UTF-8 JSON"),
        ("not an object", Image("[1,2]", 0), "must be a JSON object"),
        ("invalid UTF-8", Image("{\"ab\":1}", 0).Select((b, i) => i == 10 ? (byte)0xFF : b).ToArray(), "not valid UTF-8 JSON"),
        ("unknown dtype", Image("{" + E("w", "F8_E4M3", "[2]", 0, 2) + "}", 2), "dtype 'F8_E4M3'"),
        ("missing dtype", Image("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "no string 'dtype'"),
        ("negative extent", Image("{" + E("w", "F32", "[-1]", 0, 4) + "}", 4), "extents are non-negative integers"),
        ("fractional extent", Image("{" + E("w", "F32", "[1.5]", 0, 4) + "}", 4), "extents are non-negative integers"),
        ("extent beyond int", Image("{" + E("w", "F32", "[1000000000000000000]", 0, 4) + "}", 4), "more than a Kiln dimension holds"),
        ("huge element count", Image("{" + E("w", "F64", "[2147483647,2147483647,2147483647]", 0, 8) + "}", 8), "more than 2^63"),
        ("byte count mismatch", Image("{" + E("w", "F32", "[2,3]", 0, 20) + "}", 20), "needs 24 bytes but data_offsets [0, 20] span 20"),
        ("offsets outside the file", Image("{" + E("w", "F32", "[4]", 0, 16) + "}", 8), "outside the 8-byte data section"),
        ("begin after end", Image("{" + E("w", "F32", "[1]", 8, 4) + "}", 8), "begin after end"),
        ("negative offset", Image("{" + E("w", "F32", "[1]", -4, 0) + "}", 8), "offsets are non-negative integers"),
        ("overlapping tensors", Image("{" + E("a", "F32", "[2]", 0, 8) + "," + E("b", "F32", "[2]", 4, 12) + "}", 12), "overlaps tensor 'a'"),
        ("gap between tensors", Image("{" + E("a", "F32", "[1]", 0, 4) + "," + E("b", "F32", "[1]", 8, 12) + "}", 12), "belong to no tensor"),
        ("data not covered", Image("{" + E("a", "F32", "[1]", 0, 4) + "}", 12), "cover 4 bytes but the data section has 12"),
        ("duplicate names", Image("{" + E("a", "F32", "[1]", 0, 4) + "," + E("a", "F32", "[1]", 4, 8) + "}", 8), "names 'a' twice"),
        ("non-string metadata", Image("{\"__metadata__\":{\"n\":1}}", 0), "must be a string"),
        ("offsets not a pair", Image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4), "needs 'data_offsets' [begin, end]"),
    }.Select(c => new object[] { c.What, c.Bytes, c.Message });

    [Theory, MemberData(nameof(MalformedSafetensors))]
    public void Malformed_safetensors_are_rejected_with_the_reason(string what, byte[] bytes, string message)
    {
        var e = Assert.Throws<InvalidDataException>(() => Safetensors.Deserialize(bytes));
        Assert.True(e.Message.Contains(message), $"{what}: message \"{e.Message}\" lacks \"{message}\"");
        // The memory-mapped path validates the same way.
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, bytes);
            Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose());
        }
        finally { File.Delete(path); }
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Npy_and_npz_round_trip_every_numpy_dtype(string device)
    {
        var dev = Devices.Parse(device);
        var numpyTypes = AllDTypes.Where(d => d != DType.BFloat16).ToArray();
        Props.Check(from set in TensorSets(numpyTypes) from seed in TensorGen.Seed select (set, seed), c =>
        {
            var (set, seed) = c;
            var tensors = set.Select((e, i) => ($"a{i}", Viewed(e.DType, e.Shape, e.View, seed + i, dev))).ToDictionary(p => p.Item1, p => p.Item2);
            foreach (var (k, t) in tensors)
            {
                var ms = new MemoryStream();
                Npy.Save(ms, t);
                Assert.Equal(0, (10 + BitConverter.ToUInt16(ms.ToArray(), 8)) % 64);   // data 64-byte aligned
                ms.Position = 0;
                SameTensor(t, Npy.Load(ms), k);
            }
            string path = Path.GetTempFileName();
            try
            {
                foreach (bool compressed in new[] { false, true })
                {
                    Npz.Save(path, tensors, compressed);
                    var back = Npz.Load(path);
                    Assert.Equal(tensors.Count, back.Count);
                    foreach (var (k, t) in tensors) SameTensor(t, back[k], k);
                }
            }
            finally { File.Delete(path); }
        });
    }

    static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    [Fact]
    public void Npy_reads_files_written_by_numpy()
    {
        // Fixtures/make_fixtures.py wrote these with numpy 1.24.2 from a = arange(6).reshape(2, 3).
        var a = Enumerable.Range(0, 6).Select(i => (double)i).ToArray();
        void Is(string file, DType dt, double[] expected, params int[] shape)
        {
            var t = Npy.Load(Fixture(file));
            Assert.Equal(dt, t.DType);
            Assert.Equal(new Shape(shape), t.Shape);
            Assert.Equal(expected, t.ToDoubleArray());
        }
        Is("f4.npy", DType.Float32, a.Select(v => v / 4).ToArray(), 2, 3);
        Is("f8.npy", DType.Float64, a.Select(v => v / 3).ToArray(), 2, 3);
        Is("i4.npy", DType.Int32, a.Select(v => v - 3).ToArray(), 2, 3);
        Assert.Equal(a.Select(v => (long)v * 1_000_000_000_000).ToArray(), Npy.Load(Fixture("i8.npy")).ToArray<long>());
        Is("b1.npy", DType.Bool, a.Select(v => v % 2 == 0 ? 1.0 : 0).ToArray(), 2, 3);
        Is("f2.npy", DType.Float16, a.Select(v => v / 8).ToArray(), 2, 3);
        Is("scalar.npy", DType.Float64, [2.5]);
        Is("empty.npy", DType.Float32, [], 0, 3);
        Is("fortran.npy", DType.Float64, Enumerable.Range(0, 24).Select(i => i / 2.0).ToArray(), 2, 3, 4);
        Is("bigendian.npy", DType.Float32, a.Select(v => v / 4).ToArray(), 2, 3);
        Is("v2.npy", DType.Float32, a.Select(v => v / 4).ToArray(), 2, 3);
        var z = Npz.Load(Fixture("arrays.npz"));
        Assert.Equal(a.Select(v => v / 4).ToArray(), z["x"].ToDoubleArray());
        Assert.Equal(new long[] { 1, 2, 3 }, z["y"].ToArray<long>());
    }

    static byte[] NpyBytes(string header, int dataBytes, int major = 1)
    {
        var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0]);
        var h = Encoding.Latin1.GetBytes(header);
        if (major == 1) ms.Write(BitConverter.GetBytes((ushort)h.Length)); else ms.Write(BitConverter.GetBytes((uint)h.Length));
        ms.Write(h);
        ms.Write(new byte[dataBytes]);
        return ms.ToArray();
    }

    public static IEnumerable<object[]> MalformedNpy => new (string, byte[], string)[]
    {
        ("bad magic", Encoding.ASCII.GetBytes("\x92NUMPY\x01\x00"), "missing the magic"),
        ("truncated magic", [0x93, (byte)'N'], "the input ends after"),
        ("unknown version", NpyBytes("{}", 0, 7), "format version 7.0"),
        ("header past the end", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 0).Take(20).ToArray(), "runs past the end"),
        ("truncated data", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 8), "needs 16 data bytes but only 8 follow"),
        ("huge shape", NpyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2147483647, 2147483647, 2147483647), }", 8), "more than 2^63"),
        ("unsupported dtype", NpyBytes("{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", 2), "dtype descr '<u2' is not supported"),
        ("object dtype", NpyBytes("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", 8), "dtype descr '|O'"),
        ("missing key", NpyBytes("{'descr': '<f4', 'shape': (1,), }", 4), "lacks 'fortran_order'"),
        ("extra key", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4), "unexpected or repeated header key 'x'"),
        ("repeated key", NpyBytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4), "repeated header key 'descr'"),
        ("bad syntax", NpyBytes("{'descr': '<f4', 'fortran_order': Flase, 'shape': (1,)}", 4), "expects True or False"),
        ("negative extent", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", 4), "non-negative integer extent"),
        ("unterminated", NpyBytes("{'descr': '<f4", 4), "unterminated string"),
    }.Select(c => new object[] { c.Item1, c.Item2, c.Item3 });

    [Theory, MemberData(nameof(MalformedNpy))]
    public void Malformed_npy_is_rejected_with_the_reason(string what, byte[] bytes, string message)
    {
        var e = Assert.Throws<InvalidDataException>(() => Npy.Load(new MemoryStream(bytes)));
        Assert.True(e.Message.Contains(message), $"{what}: message \"{e.Message}\" lacks \"{message}\"");
    }

    [Fact]
    public void Npz_rejects_a_broken_archive_and_names_the_bad_member()
    {
        Assert.Throws<InvalidDataException>(() => Npz.Load(new MemoryStream(Encoding.ASCII.GetBytes("PK\x03\x04 not really a zip"))));
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        using (var s = zip.CreateEntry("bad.npy").Open()) s.Write(NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 4));
        ms.Position = 0;
        Assert.Contains("member 'bad.npy'", Assert.Throws<InvalidDataException>(() => Npz.Load(ms)).Message);
        Assert.Throws<NotSupportedException>(() => Npy.Save(new MemoryStream(), Tensor.Zeros(new Shape(2), DType.BFloat16)));
    }

    static CsvData ReadCsv(string text, CsvOptions? o = null) => Csv.Load(new StringReader(text), o, "test.csv");

    [Fact]
    public void Csv_detects_headers_and_picks_the_label_column()
    {
        var d = ReadCsv("x,y,label\n1,2.5,0\n-3,4e1,1\n\n", new CsvOptions { LabelColumn = "label" });
        Assert.Equal(new[] { "x", "y" }, d.FeatureNames);
        Assert.Equal("label", d.LabelName);
        Assert.Equal(new Shape(2, 2), d.Features.Shape);
        Assert.Equal(DType.Float32, d.Features.DType);
        Assert.Equal(new double[] { 1, 2.5, -3, 40 }, d.Features.ToDoubleArray());
        Assert.Equal(new long[] { 0, 1 }, d.Labels!.ToArray<long>());

        var noHeader = ReadCsv("1,2,3\n4,5,6\n", new CsvOptions { LabelIndex = 0, LabelDType = DType.Float64 });
        Assert.Equal(new[] { "c1", "c2" }, noHeader.FeatureNames);
        Assert.Equal(new double[] { 1, 4 }, noHeader.Labels!.ToDoubleArray());
        Assert.Equal(new double[] { 2, 3, 5, 6 }, noHeader.Features.ToDoubleArray());
        Assert.Null(ReadCsv("1;2\n3;4", new CsvOptions { Separator = ';' }).Labels);
    }

    [Fact]
    public void Csv_reports_missing_and_bad_values_with_line_and_column()
    {
        var e = Assert.Throws<InvalidDataException>(() => ReadCsv("a,b\n1,2\n3,?\n", new CsvOptions { LabelIndex = -1 }));
        Assert.Contains("line 3, column 'b' (1): missing value '?'", e.Message);
        var dropped = ReadCsv("a,b\n1,2\n3,?\n5,6\n", new CsvOptions { LabelIndex = -1, DropMissing = true });
        Assert.Equal(1, dropped.DroppedRows);
        Assert.Equal(new long[] { 2, 6 }, dropped.Labels!.ToArray<long>());
        Assert.Contains("line 2, column 1: 'abc' is not a number", Assert.Throws<InvalidDataException>(() => ReadCsv("1,2\n3,abc\n", new CsvOptions { HasHeader = false })).Message);
        Assert.Contains("line 3 has 3 fields", Assert.Throws<InvalidDataException>(() => ReadCsv("a,b\n1,2\n1,2,3\n")).Message);
        Assert.Contains("label 0.5 is not a whole number", Assert.Throws<InvalidDataException>(() => ReadCsv("1,0.5\n", new CsvOptions { LabelIndex = 1 })).Message);
        Assert.Throws<ArgumentException>(() => ReadCsv("a,b\n1,2\n", new CsvOptions { LabelColumn = "c" }));
        Assert.Throws<ArgumentException>(() => ReadCsv("1,2\n", new CsvOptions { LabelColumn = "a" }));
        Assert.Throws<ArgumentException>(() => ReadCsv("1,2\n", new CsvOptions { LabelColumn = "a", LabelIndex = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ReadCsv("1,2\n", new CsvOptions { LabelIndex = 2 }));
    }

    [Fact]
    public void Csv_tables_keep_float64_line_numbers_and_0_based_column_names()
    {
        var t = Csv.ReadTable(new StringReader("\n0.1,2\n?,3\n1e300,4\n"), new CsvOptions { DropMissing = true }, "t.csv");
        Assert.False(t.HasHeader);
        Assert.Equal(["c0", "c1"], t.Names);
        Assert.Equal([0.1, 1e300], t.Rows.Select(r => r[0]));   // float64: 0.1 and 1e300 survive
        Assert.Equal([2, 4], t.Lines);
        Assert.Equal(1, t.DroppedRows);
        Assert.Equal(["c0", "c1"], ReadCsv("1,2\n3,4\n", new CsvOptions()).FeatureNames);
        Assert.Contains("t.csv: line 2, column 'b' (1): 'NaN' is not a finite number",
            Assert.Throws<InvalidDataException>(() => Csv.ReadTable(new StringReader("a,b\n1,NaN\n"), new CsvOptions { FiniteOnly = true }, "t.csv")).Message);
        Assert.True(double.IsNaN(Csv.ReadTable(new StringReader("a,b\n1,NaN\n"), null, "t.csv").Rows[0][1]));
        Assert.Contains("line 1, column 1: the header has an empty column name",
            Assert.Throws<InvalidDataException>(() => Csv.ReadTable(new StringReader("a,,c\n1,2,3\n"), null, "t.csv")).Message);
        Assert.Contains($"'{new string('x', 20)}...' is not a number",
            Assert.Throws<InvalidDataException>(() => Csv.ReadTable(new StringReader("1,2\n3," + new string('x', 5000) + "\n"), null, "t.csv")).Message);
    }

    [Fact]
    public void Digits_matches_the_shared_csv_and_class_counts()
    {
        var (x, y) = Datasets.Digits();
        Assert.Equal(new Shape(1797, 64), x.Shape);
        Assert.Equal(DType.Float32, x.DType);
        Assert.Equal(new Shape(1797), y.Shape);
        Assert.Equal(DType.Int64, y.DType);
        // An independent parse of the shared copy with plain string splitting.
        string shared = "/work/shared/data/uci/digits.csv.gz";
        if (File.Exists(shared))
        {
            using var r = new StreamReader(new GZipStream(File.OpenRead(shared), CompressionMode.Decompress));
            var rows = r.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(',').Select(double.Parse).ToArray()).ToArray();
            Assert.Equal(rows.SelectMany(row => row[..64]).ToArray(), x.ToDoubleArray());
            Assert.Equal(rows.Select(row => (long)row[64]).ToArray(), y.ToArray<long>());
        }
        var labels = y.ToArray<long>();
        // scikit-learn's documented class sizes for this copy.
        Assert.Equal(new[] { 178, 182, 177, 183, 181, 182, 181, 179, 174, 180 }, Enumerable.Range(0, 10).Select(k => labels.Count(v => v == k)).ToArray());
        var px = x.ToDoubleArray();
        Assert.Equal(0.0, px.Min()); Assert.Equal(16.0, px.Max());
    }

    [Fact]
    public void Breast_cancer_has_the_documented_shape_and_classes()
    {
        var (x, y) = Datasets.BreastCancer();
        Assert.Equal(new Shape(569, 30), x.Shape);
        var labels = y.ToArray<long>();
        Assert.Equal(212, labels.Count(v => v == 0));   // malignant
        Assert.Equal(357, labels.Count(v => v == 1));   // benign
        Assert.Equal(17.99, x[0, 0], 1e-5);
    }

    [Fact]
    public void Train_test_split_is_a_fixed_partition()
    {
        var (x, y) = Datasets.Digits();
        var rowId = Tensor.Arange(1797).Unsqueeze(1);   // track rows through the split
        var ((trX, trY), (teX, teY)) = Datasets.TrainTestSplit(rowId, y);
        Assert.Equal(450, teX.Shape[0]);   // ceil(1797 / 4)
        Assert.Equal(1347, trX.Shape[0]);
        var ids = trX.ToArray<long>().Concat(teX.ToArray<long>()).Order().ToArray();
        Assert.Equal(Enumerable.Range(0, 1797).Select(i => (long)i), ids);
        var labels = y.ToArray<long>();
        Assert.Equal(teX.ToArray<long>().Select(i => labels[i]), teY.ToArray<long>());
        var again = Datasets.TrainTestSplit(rowId, y);
        Assert.Equal(teX.ToArray<long>(), again.Test.Features.ToArray<long>());
        Assert.NotEqual(teX.ToArray<long>(), Datasets.TrainTestSplit(rowId, y, seed: 1).Test.Features.ToArray<long>());
        Assert.Equal(x.IndexSelect(0, teX.Squeeze(1)).ToDoubleArray(), Datasets.TrainTestSplit(x, y).Test.Features.ToDoubleArray());
        Assert.Throws<ShapeMismatchException>(() => Datasets.TrainTestSplit(x, y.Narrow(0, 0, 10)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Datasets.TrainTestSplit(x, y, 1.5));
    }
}
