using System.IO.Compression;

namespace Kiln.IO;

/// <summary>
/// Reads and writes NumPy .npz archives: a zip file with one .npy member per array (numpy.savez and savez_compressed),
/// keyed by the member name without ".npy". Malformed input throws <see cref="InvalidDataException"/>.
/// </summary>
public static class Npz
{
    /// <summary>Loads every array of the .npz file at <paramref name="path"/> as CPU tensors.</summary>
    /// <exception cref="InvalidDataException">The archive or one of its arrays is malformed.</exception>
    public static IReadOnlyDictionary<string, Tensor> Load(string path)
    {
        using var fs = File.OpenRead(path);
        return Load(fs);
    }

    /// <summary>Loads every array of a .npz archive read from <paramref name="stream"/>.</summary>
    /// <exception cref="InvalidDataException">The archive or one of its arrays is malformed.</exception>
    public static IReadOnlyDictionary<string, Tensor> Load(Stream stream)
    {
        var result = new Dictionary<string, Tensor>();
        try
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            foreach (var e in zip.Entries)
            {
                if (e.FullName.EndsWith('/')) continue;
                string key = e.FullName.EndsWith(".npy", StringComparison.Ordinal) ? e.FullName[..^4] : e.FullName;
                if (result.ContainsKey(key)) throw new InvalidDataException($"npz: the archive holds '{key}' twice");
                using var s = e.Open();
                try
                {
                    result[key] = Npy.Read(s, e.Length);
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
