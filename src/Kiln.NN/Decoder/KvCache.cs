namespace Kiln.NN.Decoder;

/// <summary>
/// Keys and values of past positions, per layer, as [batch, kv heads, length, head dim]. Layers read the committed
/// entries and stash this call's entries; <see cref="Commit"/> appends the stash once the whole stack has run, so a
/// looped window can evaluate a layer many times in one call without seeing its own sub-steps as past positions.
/// </summary>
public sealed class KvCache
{
    readonly Tensor?[] _k, _v, _pendingK, _pendingV;

    /// <summary>An empty cache for a stack of <paramref name="layers"/> layers.</summary>
    public KvCache(int layers)
    {
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(layers), layers, "kv cache: a stack needs at least one layer");
        _k = new Tensor?[layers]; _v = new Tensor?[layers]; _pendingK = new Tensor?[layers]; _pendingV = new Tensor?[layers];
    }

    /// <summary>Number of layers.</summary>
    public int Layers => _k.Length;

    /// <summary>Tokens consumed so far (the position of the next call's first token).</summary>
    public int Position { get; private set; }

    /// <summary>Length of the prompt: the token count of the first call.</summary>
    public int PromptLength { get; private set; }

    /// <summary>Number of cached positions of <paramref name="layer"/> (smaller than <see cref="Position"/> when a stack runner kept the layer from writing, as a loop with <c>LoopCache.None</c> does).</summary>
    public int Length(int layer) => _k[layer]?.Shape[2] ?? 0;

    /// <summary>The committed keys and values of <paramref name="layer"/>, or nulls when it has none.</summary>
    public (Tensor? Keys, Tensor? Values) Get(int layer) => (_k[layer], _v[layer]);

    /// <summary>Stashes this call's keys and values of <paramref name="layer"/> ([batch, kv heads, positions, head dim]); a later stash in the same call replaces it.</summary>
    public void Stash(int layer, Tensor keys, Tensor values)
    {
        _pendingK[layer] = keys;
        _pendingV[layer] = values;
    }

    /// <summary>A copy that shares the (immutable) entries but not the bookkeeping, so both can go on independently.</summary>
    public KvCache Clone()
    {
        var c = new KvCache(Layers) { Position = Position, PromptLength = PromptLength };
        Array.Copy(_k, c._k, Layers); Array.Copy(_v, c._v, Layers);
        return c;
    }

    /// <summary>Appends every layer's stash to its entries and advances <see cref="Position"/> by <paramref name="tokens"/>.</summary>
    public void Commit(int tokens)
    {
        if (Position == 0) PromptLength = tokens;
        for (int i = 0; i < _k.Length; i++)
        {
            if (_pendingK[i] is not { } pk) continue;
            _k[i] = _k[i] is { } k ? Tensor.Concat([k, pk], 2) : pk.Contiguous();
            _v[i] = _v[i] is { } v ? Tensor.Concat([v, _pendingV[i]!], 2) : _pendingV[i]!.Contiguous();
            _pendingK[i] = null; _pendingV[i] = null;
        }
        Position += tokens;
    }
}
