using System.IO.Compression;

namespace Kiln.IO;

/// <summary>
/// Reads and writes NumPy .npz archives: a zip file with one .npy member per array (numpy.savez and savez_compressed),
/// keyed by the member name without ".npy". Malformed input throws <see cref="InvalidDataException"/>.
/// </summary>
public static class Npz
{
    /// <summary>Loads every array of the .npz file at <paramref name="path"/> as CPU tensors.</summary>
    /// <param name="path">The .npz file.</param>
    /// <param name="limits">Bounds on decompressed sizes (default <see cref="ReadLimits.Default"/>).</param>
    /// <exception cref="InvalidDataException">The archive or one of its arrays is malformed, a member's CRC does not
    /// match its data, or the members expand past <see cref="ReadLimits.MaxDecompressedBytes"/>.</exception>
    public static IReadOnlyDictionary<string, Tensor> Load(string path, ReadLimits? limits = null)
    {
        using var fs = File.OpenRead(path);
        return Load(fs, limits);
    }

    /// <summary>Loads every array of a .npz archive read from <paramref name="stream"/>.</summary>
    /// <param name="stream">The archive, seekable or not.</param>
    /// <param name="limits">Bounds on decompressed sizes (default <see cref="ReadLimits.Default"/>).</param>
    /// <exception cref="InvalidDataException">The archive or one of its arrays is malformed, a member's CRC does not
    /// match its data, or the members expand past <see cref="ReadLimits.MaxDecompressedBytes"/>.</exception>
    public static IReadOnlyDictionary<string, Tensor> Load(Stream stream, ReadLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        limits ??= ReadLimits.Default;
        limits.Validate();
        var result = new Dictionary<string, Tensor>();
        long expanded = 0;
        try
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            foreach (var e in zip.Entries)
            {
                if (e.FullName.EndsWith('/')) continue;
                string key = e.FullName.EndsWith(".npy", StringComparison.Ordinal) ? e.FullName[..^4] : e.FullName;
                // Save refuses an empty name, so an archive holding one could not be written back.
                if (key.Length == 0) throw new InvalidDataException($"npz: member '{e.FullName}' gives an array an empty name");
                if (result.ContainsKey(key)) throw new InvalidDataException($"npz: the archive holds '{key}' twice");
                // The declared size is checked before anything is inflated, and the inflated bytes against it after.
                expanded += e.Length;
                if (e.Length is < 0 or > int.MaxValue || expanded > limits.MaxDecompressedBytes)
                    throw new InvalidDataException($"npz: member '{e.FullName}' declares {e.Length} bytes, taking the archive to {expanded} decompressed bytes, " +
                        $"past the {Math.Min(limits.MaxDecompressedBytes, int.MaxValue)}-byte limit (ReadLimits.MaxDecompressedBytes)");
                var bytes = ReadMember(e);
                try
                {
                    result[key] = Npy.Read(new MemoryStream(bytes, writable: false), bytes.Length);
                }
                catch (InvalidDataException ex)
                {
                    throw new InvalidDataException($"npz: member '{e.FullName}': {ex.Message}", ex);
                }
            }
        }
        // Corrupt zip structures surface from System.IO.Compression as several exception types; all mean malformed input.
        catch (Exception ex) when (ex is IOException or ArgumentException or NotSupportedException or InvalidOperationException && ex is not InvalidDataException)
        {
            throw new InvalidDataException($"npz: not a readable zip archive: {ex.Message}", ex);
        }
        return result;
    }

    // Inflates exactly the declared size (a member that holds more or less is malformed) and checks the CRC-32, so a
    // flipped bit in stored data cannot load as a different number.
    static byte[] ReadMember(ZipArchiveEntry e)
    {
        var bytes = new byte[e.Length];
        using var s = e.Open();
        int got = 0;
        while (got < bytes.Length)
        {
            int r = s.Read(bytes, got, bytes.Length - got);
            if (r == 0) throw new InvalidDataException($"npz: member '{e.FullName}' holds {got} bytes but declares {e.Length}");
            got += r;
        }
        if (s.ReadByte() >= 0) throw new InvalidDataException($"npz: member '{e.FullName}' holds more than the {e.Length} bytes it declares");
        uint crc = Crc32(bytes);
        if (crc != e.Crc32)
            throw new InvalidDataException($"npz: member '{e.FullName}' has CRC-32 {crc:x8} but the archive records {e.Crc32:x8}: the data is corrupt");
        return bytes;
    }

    static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    // The zip (IEEE 802.3, reflected) CRC-32.
    static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    /// <summary>
    /// Writes <paramref name="arrays"/> as a .npz archive at <paramref name="path"/> (members "name.npy"), deflated when
    /// <paramref name="compressed"/> (numpy.savez_compressed) and stored otherwise (numpy.savez).
    /// </summary>
    /// <exception cref="NotSupportedException">An array is BFloat16.</exception>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> arrays, bool compressed = false)
    {
        ArgumentNullException.ThrowIfNull(arrays);
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Create);
        foreach (var (name, t) in arrays)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("npz: an array name is empty", nameof(arrays));
            var e = zip.CreateEntry(name + ".npy", compressed ? CompressionLevel.Optimal : CompressionLevel.NoCompression);
            using var s = e.Open();
            Npy.Save(s, t);
        }
    }
}
