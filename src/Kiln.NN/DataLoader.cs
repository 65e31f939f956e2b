using System.Collections;
using System.Threading.Channels;

namespace Kiln.NN;

/// <summary>A data set of <see cref="Count"/> items addressed by index (PyTorch's map-style Dataset).</summary>
/// <typeparam name="T">The item type.</typeparam>
public interface IDataset<out T>
{
    /// <summary>The number of items.</summary>
    int Count { get; }
    /// <summary>Item <paramref name="index"/>, 0 &lt;= index &lt; Count.</summary>
    T this[int index] { get; }
}

/// <summary>
/// Batches of a data set, epoch by epoch: each enumeration is one epoch, in index order or shuffled by a
/// <see cref="Generator"/> (so the same seed gives the same batches), optionally without the last short batch, and
/// optionally prefetched by a background worker that stays <see cref="Prefetch"/> batches ahead. Build one with
/// <see cref="DataLoader.FromTensors"/> or <see cref="DataLoader.FromDataset{TItem, TBatch}"/>.
/// </summary>
/// <remarks>
/// A batch belongs to the code that enumerates it, not to any <see cref="TensorScope"/>: the prefetch worker runs
/// outside the consumer's scopes. Dispose a batch at the end of its step, or let the garbage collector free it.
/// </remarks>
/// <typeparam name="TBatch">The batch type.</typeparam>
public sealed class DataLoader<TBatch> : IEnumerable<TBatch>
{
    readonly Func<int[], TBatch> _fetch;

    internal DataLoader(int count, Func<int[], TBatch> fetch, int batchSize, bool shuffle, Generator? generator, bool dropLast, int prefetch)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "data loader: the data set has a negative size");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "data loader: batchSize must be at least 1");
        if (prefetch < 0) throw new ArgumentOutOfRangeException(nameof(prefetch), prefetch, "data loader: prefetch must be non-negative");
        if (!shuffle && generator is not null) throw new ArgumentException("data loader: a generator was given without shuffle", nameof(generator));
        ItemCount = count; _fetch = fetch; BatchSize = batchSize; Shuffle = shuffle; Generator = generator ?? (shuffle ? Generator.Default : null);
        DropLast = dropLast; Prefetch = prefetch;
    }

    /// <summary>Items in the data set.</summary>
    public int ItemCount { get; }
    /// <summary>Items per batch (the last batch of an epoch may be shorter unless <see cref="DropLast"/>).</summary>
    public int BatchSize { get; }
    /// <summary>Whether each epoch visits the items in a fresh random order.</summary>
    public bool Shuffle { get; }
    /// <summary>The stream the orders are drawn from (null without shuffle); checkpoint it to resume an epoch sequence.</summary>
    public Generator? Generator { get; }
    /// <summary>Whether an epoch ends before a short last batch.</summary>
    public bool DropLast { get; }
    /// <summary>Batches a background worker prepares ahead (0: each batch is made when asked for).</summary>
    public int Prefetch { get; }
    /// <summary>Batches per epoch.</summary>
    public int Count => DropLast ? ItemCount / BatchSize : (ItemCount + BatchSize - 1) / BatchSize;

    /// <summary>One epoch's batches of indices, in order.</summary>
    IEnumerable<int[]> Indices()
    {
        int[] order = Shuffle ? Tensor.RandPerm(ItemCount, Generator).ToArray<long>().Select(i => (int)i).ToArray() : [.. Enumerable.Range(0, ItemCount)];
        for (int b = 0; b < Count; b++) yield return order[(b * BatchSize)..Math.Min(ItemCount, (b + 1) * BatchSize)];
    }

    /// <summary>Starts an epoch (drawing its order now, so epochs follow the generator in enumeration order).</summary>
    public IEnumerator<TBatch> GetEnumerator()
    {
        var batches = Indices().ToArray();
        return Prefetch == 0 ? batches.Select(_fetch).GetEnumerator() : Prefetched(batches);
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    IEnumerator<TBatch> Prefetched(int[][] batches)
    {
        var channel = Channel.CreateBounded<TBatch>(new BoundedChannelOptions(Prefetch) { SingleReader = true, SingleWriter = true });
        using var stop = new CancellationTokenSource();
        Task worker;
        // Without the caller's execution context, so the worker's tensors join none of the caller's scopes.
        using (ExecutionContext.SuppressFlow())
            worker = Task.Run(async () =>
            {
                try
                {
                    foreach (var idx in batches) await channel.Writer.WriteAsync(_fetch(idx), stop.Token);
                    channel.Writer.Complete();
                }
                catch (Exception e) { channel.Writer.Complete(e); }
            });
        try
        {
            while (true)
            {
                TBatch item;
                try
                {
                    if (!channel.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult()) break;
                    if (!channel.Reader.TryRead(out item!)) continue;
                }
                catch (Exception e)
                {
                    var cause = e is ChannelClosedException { InnerException: { } inner } ? inner : e;
                    throw new InvalidOperationException($"data loader: making a batch failed: {cause.Message}", cause);
                }
                yield return item;
            }
        }
        finally
        {
            stop.Cancel();
            try { worker.GetAwaiter().GetResult(); } catch (OperationCanceledException) { }
        }
    }
}

/// <summary>Factories of <see cref="DataLoader{TBatch}"/>.</summary>
public static class DataLoader
{
    /// <summary>
    /// Batches of rows of tensors that share their first dim (features, labels, ...): each batch holds, per column, the
    /// selected rows in batch order (one index_select per column, on the columns' device).
    /// </summary>
    /// <exception cref="ArgumentException">No columns, or columns with different first dims.</exception>
    public static DataLoader<Tensor[]> FromTensors(Tensor[] columns, int batchSize, bool shuffle = false, Generator? generator = null, bool dropLast = false, int prefetch = 0)
    {
        ArgumentNullException.ThrowIfNull(columns);
        if (columns.Length == 0) throw new ArgumentException("data loader: at least one column is needed", nameof(columns));
        for (int i = 0; i < columns.Length; i++)
            if (columns[i].Rank == 0 || columns[i].Shape[0] != columns[0].Shape[0])
                throw new ArgumentException($"data loader: every column needs the same first dim; column 0 has shape {columns[0].Shape}, column {i} {columns[i].Shape}", nameof(columns));
        return new(columns[0].Shape[0], idx =>
        {
            var index = Tensor.FromArray(idx.Select(i => (long)i).ToArray());
            return [.. columns.Select(c => c.Detach().IndexSelect(0, index.To(c.Device)))];
        }, batchSize, shuffle, generator, dropLast, prefetch);
    }

    /// <summary>Batches of a data set's items, combined by <paramref name="collate"/> (for tensor items, e.g. <see cref="Stack"/>).</summary>
    public static DataLoader<TBatch> FromDataset<TItem, TBatch>(IDataset<TItem> dataset, Func<IReadOnlyList<TItem>, TBatch> collate, int batchSize,
        bool shuffle = false, Generator? generator = null, bool dropLast = false, int prefetch = 0)
    {
        ArgumentNullException.ThrowIfNull(dataset); ArgumentNullException.ThrowIfNull(collate);
        return new(dataset.Count, idx => collate([.. idx.Select(i => dataset[i])]), batchSize, shuffle, generator, dropLast, prefetch);
    }

    /// <summary>The default collation of items that are tuples of tensors: column j of the batch stacks every item's tensor j.</summary>
    /// <exception cref="ArgumentException">The items have different numbers of tensors.</exception>
    public static Tensor[] Stack(IReadOnlyList<Tensor[]> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (items.Count == 0) return [];
        int n = items[0].Length;
        if (items.Any(t => t.Length != n)) throw new ArgumentException($"collate: items hold different numbers of tensors ({string.Join(", ", items.Select(t => t.Length).Distinct())})", nameof(items));
        return [.. Enumerable.Range(0, n).Select(j => Tensor.Stack([.. items.Select(t => t[j])]))];
    }
}
