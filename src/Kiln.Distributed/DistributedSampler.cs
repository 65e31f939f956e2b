namespace Kiln.Distributed;

/// <summary>
/// The indices of a dataset that one rank reads in an epoch (PyTorch's <c>DistributedSampler</c>): the dataset is
/// shuffled the same way on every rank (seed + epoch), padded by repeating its first indices to a multiple of the world
/// size (or truncated, with dropLast), and rank r takes every WorldSize-th index starting at r. The ranks' shares are
/// disjoint and together cover the dataset.
/// </summary>
public sealed class DistributedSampler
{
    /// <summary>A sampler of <paramref name="length"/> items for <paramref name="rank"/> of <paramref name="worldSize"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">length is negative, worldSize is not positive, or rank is outside [0, worldSize).</exception>
    public DistributedSampler(int length, int rank, int worldSize, bool shuffle = true, ulong seed = 0, bool dropLast = false)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "sampler: the dataset length must be non-negative");
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, "sampler: the world size must be positive");
        if ((uint)rank >= (uint)worldSize) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"sampler: rank must lie in [0, {worldSize})");
        (Length, Rank, WorldSize, Shuffle, Seed, DropLast) = (length, rank, worldSize, shuffle, seed, dropLast);
    }

    /// <summary>A sampler for this rank of <paramref name="group"/>.</summary>
    public DistributedSampler(int length, IProcessGroup group, bool shuffle = true, ulong seed = 0, bool dropLast = false)
        : this(length, (group ?? throw new ArgumentNullException(nameof(group))).Rank, group.WorldSize, shuffle, seed, dropLast) { }

    /// <summary>Dataset length.</summary>
    public int Length { get; }
    /// <summary>This rank.</summary>
    public int Rank { get; }
    /// <summary>Number of ranks.</summary>
    public int WorldSize { get; }
    /// <summary>Whether each epoch is a fresh permutation.</summary>
    public bool Shuffle { get; }
    /// <summary>Seed of the permutations (the same on every rank).</summary>
    public ulong Seed { get; }
    /// <summary>Drop the tail that does not fill a round of the world size, instead of padding it.</summary>
    public bool DropLast { get; }
    /// <summary>The epoch whose permutation <see cref="Indices"/> gives (set it at the start of each epoch).</summary>
    public int Epoch { get; set; }

    /// <summary>How many indices each rank gets per epoch.</summary>
    public int Count => DropLast ? Length / WorldSize : (Length + WorldSize - 1) / WorldSize;

    /// <summary>This rank's indices for <see cref="Epoch"/>, in reading order.</summary>
    public int[] Indices()
    {
        var order = Enumerable.Range(0, Length).ToArray();
        // System.Random with an explicit seed gives the same sequence in every process (unlike HashCode).
        if (Shuffle) new Random(unchecked((int)(Seed * 1_000_003UL + (ulong)Epoch))).Shuffle(order);
        var mine = new int[Count];
        // The padded order repeats from its start: element j is order[j mod Length].
        for (int i = 0; i < mine.Length; i++) mine[i] = order[(Rank + i * WorldSize) % Length];
        return mine;
    }
}
