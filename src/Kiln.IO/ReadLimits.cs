namespace Kiln.IO;

/// <summary>
/// Limits the readers apply to untrusted files beyond what the file itself can vouch for: sizes that a small file can
/// claim but only decompression or a regex engine would reveal. Readers check every size they allocate for against the
/// file first; these bound the rest. Raise them for trusted inputs that need more.
/// </summary>
public sealed record ReadLimits
{
    /// <summary>The limits a reader uses when none are given.</summary>
    public static ReadLimits Default { get; } = new();

    /// <summary>The most bytes all members of one compressed archive (an .npz) may expand to together (default 4 GiB).</summary>
    public long MaxDecompressedBytes { get; init; } = 4L << 30;

    /// <summary>
    /// How long one match of a regex taken from a file (a tokenizer's pre-tokenizer) may run before it throws
    /// <see cref="System.Text.RegularExpressions.RegexMatchTimeoutException"/> (default 1 s), so a pattern that
    /// backtracks catastrophically cannot hang encoding.
    /// </summary>
    public TimeSpan RegexMatchTimeout { get; init; } = TimeSpan.FromSeconds(1);

    internal void Validate()
    {
        if (MaxDecompressedBytes < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxDecompressedBytes), MaxDecompressedBytes, "read limits: the decompressed-size limit must be non-negative");
        if (RegexMatchTimeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(RegexMatchTimeout), RegexMatchTimeout, "read limits: the regex match timeout must be positive");
    }
}
