using Microsoft.Win32.SafeHandles;

namespace Kiln.IO;

/// <summary>
/// A safetensors file opened for lazy access: the header is parsed and validated on <see cref="Open"/>, and each
/// tensor's bytes are read into a new CPU tensor only when <see cref="Get"/> asks for it (so a large checkpoint costs
/// nothing until used). Reads go through the open file handle, not a memory map: a file truncated or rewritten
/// underneath a map faults with SIGBUS, which no handler can catch, while a short read here throws
/// <see cref="InvalidDataException"/>. Dispose to close the file; tensors already returned stay valid.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    readonly SafeFileHandle _handle;
    readonly long _length;
    readonly Dictionary<string, SafetensorsEntry> _byName;
    readonly long _dataStart;
    bool _disposed;

    SafetensorsFile(string path, SafeFileHandle handle, long length, List<SafetensorsEntry> entries,
        Dictionary<string, string> metadata, long dataStart)
    {
        Path = path; _handle = handle; _length = length; _dataStart = dataStart;
        Entries = entries;
        _byName = entries.ToDictionary(e => e.Name);
        Metadata = metadata;
    }

    /// <summary>Opens the file at <paramref name="path"/> and validates its header.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a well-formed safetensors file (the message says why).</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors: no file at '{path}'", path);
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        try
        {
            long length = RandomAccess.GetLength(handle);
            var (entries, metadata, dataStart) = SafetensorsHeader.Read((off, dst) => ReadFile(handle, path, length, off, dst), length);
            return new SafetensorsFile(path, handle, length, entries, metadata, dataStart);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    static void ReadFile(SafeFileHandle handle, string path, long length, long offset, Span<byte> dst)
    {
        if (offset < 0 || offset + dst.Length > length)
            // The header was validated against the file length, so this is a bug, not bad data.
            throw new InvalidOperationException($"safetensors: internal read of {dst.Length} bytes at {offset} would leave the {length}-byte file");
        while (dst.Length > 0)
        {
            int r = RandomAccess.Read(handle, dst, offset);
            if (r == 0)
                throw new InvalidDataException($"safetensors: '{path}' ends at byte {offset}, but it was {length} bytes when opened: the file changed underneath the reader");
            dst = dst[r..];
            offset += r;
        }
    }

    /// <summary>The path this file was opened from.</summary>
    public string Path { get; }

    /// <summary>Every tensor's name, dtype, shape and byte range, in file order.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }

    /// <summary>The tensor names, in file order.</summary>
    public IEnumerable<string> Names => Entries.Select(e => e.Name);

    /// <summary>The header's "__metadata__" string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>True when the file holds a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>A new CPU tensor holding a copy of the tensor <paramref name="name"/> (BF16 and F16 keep their storage dtypes).</summary>
    /// <exception cref="KeyNotFoundException">No tensor of that name.</exception>
    /// <exception cref="ObjectDisposedException">The file was disposed.</exception>
    /// <exception cref="InvalidDataException">The file shrank since it was opened.</exception>
    public Tensor Get(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_byName.TryGetValue(name, out var e))
            throw new KeyNotFoundException($"safetensors: '{Path}' has no tensor '{name}' (it has {Entries.Count}: {string.Join(", ", Names.Take(8))}{(Entries.Count > 8 ? ", ..." : "")})");
        return RawData.ToTensor((off, dst) => ReadFile(_handle, Path, _length, off, dst), _dataStart + e.Begin, e.DType, e.Shape);
    }

    /// <summary>Same as <see cref="Get"/>.</summary>
    public Tensor this[string name] => Get(name);

    /// <summary>Copies every tensor out, keyed by name in file order.</summary>
    public IReadOnlyDictionary<string, Tensor> LoadAll()
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var e in Entries) d[e.Name] = Get(e.Name);
        return d;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _handle.Dispose();
    }
}
