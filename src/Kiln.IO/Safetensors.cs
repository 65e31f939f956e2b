using System.Text.Json;

namespace Kiln.IO;

/// <summary>
/// Reads and writes Hugging Face safetensors files: an 8-byte little-endian header length, a JSON header giving each
/// tensor's dtype (F32, F64, F16, BF16, I64, I32, BOOL), shape and byte range, and the raw little-endian data. BF16 and
/// F16 load as Kiln's <see cref="DType.BFloat16"/> and <see cref="DType.Float16"/> storage types. Malformed input
/// throws <see cref="InvalidDataException"/> naming what is wrong.
/// </summary>
public static class Safetensors
{
    /// <summary>
    /// Loads every tensor of a safetensors file into CPU tensors (copies; the file is closed afterwards), or, when
    /// <paramref name="path"/> ends in ".json", of a sharded checkpoint described by a "model.safetensors.index.json"
    /// (its "weight_map" names the shard, in the index's folder, that holds each tensor).
    /// For lazy access to a large file use <see cref="SafetensorsFile.Open"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file, or a shard the index names, does not exist.</exception>
    /// <exception cref="InvalidDataException">A file or the index is malformed, or a file changed while it was read.</exception>
    public static IReadOnlyDictionary<string, Tensor> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) return LoadSharded(path);
        using var f = SafetensorsFile.Open(path);
        return f.LoadAll();
    }

    /// <summary>Parses an in-memory safetensors image (as <see cref="Serialize"/> makes) into CPU tensors.</summary>
    /// <exception cref="InvalidDataException">The bytes are not a well-formed safetensors file.</exception>
    public static IReadOnlyDictionary<string, Tensor> Deserialize(ReadOnlyMemory<byte> data)
    {
        var read = RawData.Over(data);
        var (entries, _, dataStart) = SafetensorsHeader.Read(read, data.Length);
        var d = new Dictionary<string, Tensor>();
        foreach (var e in entries) d[e.Name] = RawData.ToTensor(read, dataStart + e.Begin, e.DType, e.Shape);
        return d;
    }

    /// <summary>The "__metadata__" map of an in-memory safetensors image (empty when absent).</summary>
    /// <exception cref="InvalidDataException">The bytes are not a well-formed safetensors file.</exception>
    public static IReadOnlyDictionary<string, string> ReadMetadata(ReadOnlyMemory<byte> data) =>
        SafetensorsHeader.Read(RawData.Over(data), data.Length).Metadata;

    /// <summary>
    /// Writes <paramref name="tensors"/> (any device and layout; written row-major in dictionary order) and the optional
    /// string <paramref name="metadata"/> to a safetensors file at <paramref name="path"/>, replacing it.
    /// </summary>
    /// <exception cref="ArgumentException">A name is empty or "__metadata__".</exception>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        Write(fs, tensors, metadata);
    }

    /// <summary>The safetensors image of <paramref name="tensors"/> and <paramref name="metadata"/> as bytes.</summary>
    public static byte[] Serialize(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var ms = new MemoryStream();
        Write(ms, tensors, metadata);
        return ms.ToArray();
    }

    static void Write(Stream s, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var layout = new List<(string, DType, Shape, long, long)>();
        long pos = 0;
        foreach (var (name, t) in tensors)
        {
            if (string.IsNullOrEmpty(name) || name == "__metadata__")
                throw new ArgumentException($"safetensors: '{name}' cannot name a tensor", nameof(tensors));
            ArgumentNullException.ThrowIfNull(t, $"{nameof(tensors)}[{name}]");
            long bytes = (long)t.Numel * t.DType.Size();
            layout.Add((name, t.DType, t.Shape, pos, pos + bytes));
            pos += bytes;
        }
        var header = SafetensorsHeader.Build(layout, metadata);
        Span<byte> len8 = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len8, (ulong)header.Length);
        s.Write(len8);
        s.Write(header);
        foreach (var t in tensors.Values) s.Write(RawData.ToBytes(t));
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> as a sharded checkpoint in <paramref name="directory"/>: files
    /// "model-0000i-of-0000n.safetensors" of at most <paramref name="maxShardBytes"/> data bytes each (a larger tensor
    /// gets a shard of its own) and the "model.safetensors.index.json" that <see cref="Load"/> reads. Returns the index path.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxShardBytes"/> is not positive.</exception>
    public static string SaveSharded(string directory, IReadOnlyDictionary<string, Tensor> tensors, long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes), maxShardBytes, "safetensors: the shard size must be positive");
        Directory.CreateDirectory(directory);
        var shards = new List<Dictionary<string, Tensor>> { new() };
        long size = 0;
        foreach (var (name, t) in tensors)
        {
            long bytes = (long)t.Numel * t.DType.Size();
            if (size > 0 && size + bytes > maxShardBytes) { shards.Add([]); size = 0; }
            shards[^1][name] = t;
            size += bytes;
        }
        var weightMap = new Dictionary<string, string>();
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            Save(System.IO.Path.Combine(directory, file), shards[i], metadata);
            foreach (var name in shards[i].Keys) weightMap[name] = file;
        }
        string index = System.IO.Path.Combine(directory, "model.safetensors.index.json");
        var doc = new Dictionary<string, object>
        {
            ["metadata"] = new Dictionary<string, long> { ["total_size"] = tensors.Values.Sum(t => (long)t.Numel * t.DType.Size()) },
            ["weight_map"] = weightMap,
        };
        File.WriteAllText(index, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
        return index;
    }

    static IReadOnlyDictionary<string, Tensor> LoadSharded(string indexPath)
    {
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        Dictionary<string, List<string>> byFile;
        try
        {
            var bytes = File.ReadAllBytes(indexPath);
            if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new InvalidDataException($"safetensors index '{indexPath}' is not valid UTF-8");
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 16 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"safetensors index '{indexPath}': needs an object with a 'weight_map' object");
            byFile = [];
            var names = new HashSet<string>();
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"safetensors index '{indexPath}': weight_map['{p.Name}'] must be a file name string");
                if (!names.Add(p.Name)) throw new InvalidDataException($"safetensors index '{indexPath}': weight_map names '{p.Name}' twice");
                string file = p.Value.GetString()!;
                // Shards live beside the index: a path that leaves its folder is refused.
                if (file.Length == 0 || System.IO.Path.IsPathRooted(file) || file.Contains("..") || file.IndexOfAny(['/', '\\']) >= 0)
                    throw new InvalidDataException($"safetensors index '{indexPath}': shard '{file}' for '{p.Name}' is not a plain file name in the index's folder");
                if (!byFile.TryGetValue(file, out var list)) byFile[file] = list = [];
                list.Add(p.Name);
            }
        }
        // JsonElement throws InvalidOperationException when a string's escapes form a lone UTF-16 surrogate.
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"safetensors index '{indexPath}' is not valid JSON: {e.Message}", e);
        }
        var result = new Dictionary<string, Tensor>();
        foreach (var (file, names) in byFile)
        {
            using var f = SafetensorsFile.Open(System.IO.Path.Combine(dir, file));
            foreach (var name in names)
            {
                if (!f.Contains(name))
                    throw new InvalidDataException($"safetensors index '{indexPath}': weight_map puts '{name}' in '{file}', which has no such tensor");
                result[name] = f.Get(name);
            }
        }
        return result;
    }
}
