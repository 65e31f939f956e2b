namespace Kiln.Distributed;

/// <summary>A distributed operation failed: no MPI library, an MPI error, or a collective that a peer never joined.</summary>
public class DistributedException : Exception
{
    /// <summary>An exception with <paramref name="message"/>.</summary>
    public DistributedException(string message) : base(message) { }
    /// <summary>An exception with <paramref name="message"/> caused by <paramref name="inner"/>.</summary>
    public DistributedException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// A collective or point-to-point operation did not complete within the process group's timeout: a peer rank died or
/// stalled. The group is unusable afterwards; the process should exit (with a non-zero status, so mpirun ends the job).
/// </summary>
public sealed class DistributedTimeoutException(string message) : DistributedException(message);
