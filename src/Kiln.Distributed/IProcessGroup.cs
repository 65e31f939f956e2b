using Kiln.NN;

namespace Kiln.Distributed;

/// <summary>
/// The ranks of one distributed job and the collectives Kiln needs between them (PyTorch's <c>ProcessGroup</c>). Every
/// rank must call the same collectives in the same order. Tensors are float32 or float64; a backend may keep them on
/// its device (an NCCL backend would run on GPU memory). Its <see cref="ITensorParallel.AllReduce"/> sums in place, and
/// the result is bitwise equal on every rank (each element is summed on one rank and then shared).
/// </summary>
public interface IProcessGroup : ITensorParallel, IDisposable
{
    /// <summary>How long a collective may wait for its peers before it throws <see cref="DistributedTimeoutException"/>.</summary>
    TimeSpan Timeout { get; }
    /// <summary>Waits until every rank has called it.</summary>
    void Barrier();
    /// <summary>Overwrites <paramref name="tensor"/> on every rank with its value on rank <paramref name="root"/>.</summary>
    void Broadcast(Tensor tensor, int root = 0);
    /// <summary>
    /// Sums <paramref name="input"/> ([WorldSize * n] elements) over ranks and writes block <see cref="ITensorParallel.Rank"/> of the sum
    /// (n elements) into <paramref name="output"/>.
    /// </summary>
    void ReduceScatter(Tensor input, Tensor output);
    /// <summary>Writes the <paramref name="input"/> (n elements) of every rank, in rank order, into <paramref name="output"/> ([WorldSize * n] elements).</summary>
    void AllGather(Tensor input, Tensor output);
    /// <summary>Sends <paramref name="tensor"/> to rank <paramref name="destination"/>, which receives it with <see cref="Receive"/> and the same <paramref name="tag"/>.</summary>
    void Send(Tensor tensor, int destination, int tag = 0);
    /// <summary>Overwrites <paramref name="tensor"/> with the one rank <paramref name="source"/> sent with <paramref name="tag"/>.</summary>
    void Receive(Tensor tensor, int source, int tag = 0);
}
