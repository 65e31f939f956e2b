namespace Kiln.Distributed;

/// <summary>Helpers over any <see cref="IProcessGroup"/>.</summary>
public static class ProcessGroupExtensions
{
    /// <summary>
    /// Runs <paramref name="save"/> on rank 0 only (replicas hold equal parameters, so one copy is the checkpoint), then
    /// waits at a barrier so no rank goes on, or reads the checkpoint, before it is written.
    /// </summary>
    public static void SaveOnRank0(this IProcessGroup group, Action save)
    {
        ArgumentNullException.ThrowIfNull(group); ArgumentNullException.ThrowIfNull(save);
        if (group.Rank == 0) save();
        group.Barrier();
    }
}
