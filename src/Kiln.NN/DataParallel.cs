namespace Kiln.NN;

/// <summary>
/// One replica of data-parallel training, as a training loop sees it: which share of each batch this replica computes,
/// and the point after backward where the replicas' gradients are averaged (Kiln.Distributed's
/// <c>DistributedDataParallel</c> implements it over a process group).
/// </summary>
public interface IDataParallel
{
    /// <summary>This replica's index, 0 .. <see cref="WorldSize"/> - 1.</summary>
    int Rank { get; }
    /// <summary>Number of replicas.</summary>
    int WorldSize { get; }
    /// <summary>
    /// Waits until the gradients of this step's backward are averaged over the replicas; afterwards every replica's
    /// parameters hold the same <see cref="Tensor.Grad"/>. Call it after backward, before the optimizer step.
    /// </summary>
    void FinishGradients();
}
