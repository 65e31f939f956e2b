using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Kiln.IO;

/// <summary>Where one tensor lives in a safetensors file: dtype, shape and its byte range in the data section.</summary>
/// <param name="Name">The tensor's key in the header.</param>
/// <param name="DType">Kiln element type.</param>
/// <param name="Shape">Extents.</param>
/// <param name="Begin">First byte of the tensor, relative to the start of the data section.</param>
/// <param name="End">One past its last byte, relative to the start of the data section.</param>
public readonly record struct SafetensorsEntry(string Name, DType DType, Shape Shape, long Begin, long End);

/// <summary>
/// Parses and validates a safetensors header (Hugging Face format): an 8-byte little-endian length N, N bytes of UTF-8
/// JSON mapping names to {dtype, shape, data_offsets} plus an optional "__metadata__" string map, then the data.
/// Every violation throws <see cref="InvalidDataException"/> naming what is wrong.
/// </summary>
internal static class SafetensorsHeader
{
    /// <summary>The largest header accepted (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    static readonly Dictionary<string, DType> FromCode = new()
    {
        ["F32"] = DType.Float32, ["F64"] = DType.Float64, ["F16"] = DType.Float16, ["BF16"] = DType.BFloat16,
        ["I32"] = DType.Int32, ["I64"] = DType.Int64, ["BOOL"] = DType.Bool,
    };

    /// <summary>The safetensors dtype code of a Kiln dtype.</summary>
    public static string Code(DType dtype) => dtype switch
    {
        DType.Float32 => "F32", DType.Float64 => "F64", DType.Float16 => "F16", DType.BFloat16 => "BF16",
        DType.Int32 => "I32", DType.Int64 => "I64", DType.Bool => "BOOL",
        _ => throw new NotSupportedException($"safetensors: no code for dtype {dtype}"),
    };

    /// <summary>Reads the header of a source of <paramref name="fileLength"/> bytes; returns the entries in data order, the metadata and where the data starts.</summary>
    public static (List<SafetensorsEntry> Entries, Dictionary<string, string> Metadata, long DataStart) Read(RawData.ReadAt read, long fileLength)
    {
        if (fileLength < 8)
            throw new InvalidDataException($"safetensors: the file is {fileLength} bytes; it must start with an 8-byte header length");
        Span<byte> len8 = stackalloc byte[8];
        read(0, len8);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(len8);
        if (n > MaxHeaderBytes)
            throw new InvalidDataException($"safetensors: header length {n} exceeds the {MaxHeaderBytes}-byte limit");
        if (8 + (long)n > fileLength)
            throw new InvalidDataException($"safetensors: header length {n} runs past the end of the {fileLength}-byte file");
        var header = new byte[n];
        read(8, header);
        long dataStart = 8 + (long)n;
        var (entries, metadata) = Parse(header, fileLength - dataStart);
        return (entries, metadata, dataStart);
    }

    static (List<SafetensorsEntry>, Dictionary<string, string>) Parse(byte[] header, long dataLength)
    {
        // Strings in a JsonDocument are decoded lazily, so invalid UTF-8 would surface later as another exception type.
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new InvalidDataException("safetensors: the header is not valid UTF-8 JSON: it holds bytes that are not UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (Exception e) when (e is JsonException or ArgumentException or DecoderFallbackException)
        {
            throw new InvalidDataException($"safetensors: the header is not valid UTF-8 JSON: {e.Message}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"safetensors: the header must be a JSON object, not {root.ValueKind}");
            var entries = new List<SafetensorsEntry>();
            var metadata = new Dictionary<string, string>();
            var seen = new HashSet<string>();
            try
            {
                foreach (var prop in root.EnumerateObject())
                {
                    if (!seen.Add(prop.Name)) throw new InvalidDataException($"safetensors: the header names '{prop.Name}' twice");
                    if (prop.Name == "__metadata__") { ReadMetadata(prop.Value, metadata); continue; }
                    // The writer refuses an empty name, so a file holding one could not be saved back.
                    if (prop.Name.Length == 0) throw new InvalidDataException("safetensors: a tensor has an empty name");
                    entries.Add(ReadEntry(prop.Name, prop.Value, dataLength));
                }
            }
            catch (InvalidOperationException e)
            {
                // JsonElement throws this when decoding a string whose escapes form a lone UTF-16 surrogate.
                throw new InvalidDataException($"safetensors: the header holds a string that is not valid Unicode: {e.Message}", e);
            }
            CheckCoverage(entries, dataLength);
            return (entries, metadata);
        }
    }

    static void ReadMetadata(JsonElement v, Dictionary<string, string> metadata)
    {
        if (v.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"safetensors: __metadata__ must be an object of strings, not {v.ValueKind}");
        foreach (var p in v.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"safetensors: __metadata__ value '{p.Name}' must be a string, not {p.Value.ValueKind}");
            if (!metadata.TryAdd(p.Name, p.Value.GetString()!))
                throw new InvalidDataException($"safetensors: __metadata__ names '{p.Name}' twice");
        }
    }

    static SafetensorsEntry ReadEntry(string name, JsonElement v, long dataLength)
    {
        if (v.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"safetensors: tensor '{name}' must be an object with dtype, shape and data_offsets, not {v.ValueKind}");
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"safetensors: tensor '{name}' has no string 'dtype'");
        string code = dt.GetString()!;
        if (!FromCode.TryGetValue(code, out var dtype))
            throw new InvalidDataException($"safetensors: tensor '{name}' has dtype '{code}', which Kiln cannot load (supported: {string.Join(", ", FromCode.Keys)})");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"safetensors: tensor '{name}' has no 'shape' array");
        var dims = new List<int>();
        long numel = 1;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long x) || x < 0)
                throw new InvalidDataException($"safetensors: tensor '{name}' has shape entry {d.GetRawText()}; extents are non-negative integers");
            if (x > int.MaxValue)
                throw new InvalidDataException($"safetensors: tensor '{name}' has extent {x}, more than a Kiln dimension holds ({int.MaxValue})");
            dims.Add((int)x);
            numel = numel == 0 || x == 0 ? 0 : numel > long.MaxValue / 8 / x ? long.MaxValue : numel * x;
        }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new InvalidDataException($"safetensors: tensor '{name}' needs 'data_offsets' [begin, end]");
        long begin = Offset(name, off[0]), end = Offset(name, off[1]);
        if (begin > end)
            throw new InvalidDataException($"safetensors: tensor '{name}' has data_offsets [{begin}, {end}] with begin after end");
        if (end > dataLength)
            throw new InvalidDataException($"safetensors: tensor '{name}' has data_offsets [{begin}, {end}] outside the {dataLength}-byte data section");
        long needed = numel == long.MaxValue ? long.MaxValue : numel * dtype.Size();
        if (needed != end - begin)
            throw new InvalidDataException($"safetensors: tensor '{name}' of shape [{string.Join(", ", dims)}] and dtype {code} needs " +
                $"{(needed == long.MaxValue ? "more than 2^63" : needed.ToString())} bytes but data_offsets [{begin}, {end}] span {end - begin}");
        if (numel > int.MaxValue)
            throw new InvalidDataException($"safetensors: tensor '{name}' has {numel} elements, more than a Kiln tensor holds ({int.MaxValue})");
        if (!ShapeFits(dims))
            throw new InvalidDataException($"safetensors: tensor '{name}' has shape [{string.Join(", ", dims)}], whose leading extents multiply past {int.MaxValue}, more than a Kiln shape holds");
        return new SafetensorsEntry(name, dtype, new Shape(dims.ToArray()), begin, end);
    }

    /// <summary>
    /// True when <see cref="Shape"/> accepts <paramref name="dims"/> (each at most int.MaxValue): it bounds every
    /// running product of the extents, so [2^20, 2^20, 0] is refused although it holds no element.
    /// </summary>
    internal static bool ShapeFits(IEnumerable<long> dims)
    {
        long p = 1;
        foreach (long d in dims)
        {
            p *= d;
            if (p > int.MaxValue) return false;
        }
        return true;
    }

    internal static bool ShapeFits(IEnumerable<int> dims) => ShapeFits(dims.Select(d => (long)d));

    static long Offset(string name, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long x) || x < 0)
            throw new InvalidDataException($"safetensors: tensor '{name}' has data offset {e.GetRawText()}; offsets are non-negative integers");
        return x;
    }

    // The tensors must tile the data section exactly: sorted by offset, each starts where the previous ended.
    static void CheckCoverage(List<SafetensorsEntry> entries, long dataLength)
    {
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long expected = 0;
        string? previous = null;
        foreach (var e in entries)
        {
            if (e.Begin < expected)
                throw new InvalidDataException($"safetensors: tensor '{e.Name}' (bytes {e.Begin}..{e.End}) overlaps tensor '{previous}' (ending at {expected})");
            if (e.Begin > expected)
                throw new InvalidDataException($"safetensors: {e.Begin - expected} bytes before tensor '{e.Name}' (at {e.Begin}) belong to no tensor");
            expected = e.End;
            previous = e.Name;
        }
        if (expected != dataLength)
            throw new InvalidDataException($"safetensors: the tensors cover {expected} bytes but the data section has {dataLength}");
    }

    /// <summary>The header bytes for tensors of the given dtypes and shapes laid out in order, padded with spaces to a multiple of 8.</summary>
    public static byte[] Build(IEnumerable<(string Name, DType DType, Shape Shape, long Begin, long End)> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, val) in metadata) w.WriteString(k, val);
                w.WriteEndObject();
            }
            foreach (var e in entries)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", Code(e.DType));
                w.WriteStartArray("shape");
                foreach (int d in e.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(e.Begin); w.WriteNumberValue(e.End);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }
}
