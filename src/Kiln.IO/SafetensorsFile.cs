using System.IO.MemoryMappedFiles;

namespace Kiln.IO;

/// <summary>
/// A safetensors file opened for lazy access: the file is memory-mapped, the header is parsed and validated on
/// <see cref="Open"/>, and each tensor's bytes are copied out into a new CPU tensor only when <see cref="Get"/> asks
/// for it (so a large checkpoint costs address space, not memory, until used). Dispose to unmap the file; tensors
/// already returned stay valid.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    readonly MemoryMappedFile _file;
    readonly MemoryMappedViewAccessor _view;
    readonly Dictionary<string, SafetensorsEntry> _byName;
    readonly long _dataStart;
    bool _disposed;

    SafetensorsFile(string path, MemoryMappedFile file, MemoryMappedViewAccessor view, List<SafetensorsEntry> entries,
        Dictionary<string, string> metadata, long dataStart)
    {
        Path = path; _file = file; _view = view; _dataStart = dataStart;
        Entries = entries;
        _byName = entries.ToDictionary(e => e.Name);
        Metadata = metadata;
    }

    /// <summary>Maps the file at <paramref name="path"/> and validates its header.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a well-formed safetensors file (the message says why).</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        long length = new FileInfo(path).Exists ? new FileInfo(path).Length : throw new FileNotFoundException($"safetensors: no file at '{path}'", path);
        if (length < 8) throw new InvalidDataException($"safetensors: '{path}' is {length} bytes; it must start with an 8-byte header length");
        var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            var v = view;
            var (entries, metadata, dataStart) = SafetensorsHeader.Read((off, dst) => ReadView(v, length, off, dst), length);
            return new SafetensorsFile(path, file, view, entries, metadata, dataStart);
        }
        catch
        {
            view?.Dispose();
            file.Dispose();
            throw;
        }
    }

    static unsafe void ReadView(MemoryMappedViewAccessor view, long length, long offset, Span<byte> dst)
    {
        if (offset < 0 || offset + dst.Length > length)
            // The header was validated against the file length, so this is a bug, not bad data.
            throw new InvalidOperationException($"safetensors: internal read of {dst.Length} bytes at {offset} would leave the {length}-byte mapping");
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        try
        {
            new ReadOnlySpan<byte>(p + view.PointerOffset + offset, dst.Length).CopyTo(dst);
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
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
    public Tensor Get(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_byName.TryGetValue(name, out var e))
            throw new KeyNotFoundException($"safetensors: '{Path}' has no tensor '{name}' (it has {Entries.Count}: {string.Join(", ", Names.Take(8))}{(Entries.Count > 8 ? ", ..." : "")})");
        long length = _view.Capacity;
        return RawData.ToTensor((off, dst) => ReadView(_view, length, off, dst), _dataStart + e.Begin, e.DType, e.Shape);
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

    /// <summary>Unmaps the file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.Dispose();
        _file.Dispose();
    }
}
