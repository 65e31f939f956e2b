namespace Kiln.NN.Decoder;

/// <summary>
/// Keys and values of past positions, per layer, as [batch, kv heads, length, head dim]. Layers read the committed
/// entries and stash this call's entries; <see cref="Commit"/> appends the stash once the whole stack has run, so a
/// looped window can evaluate a layer many times in one call without seeing its own sub-steps as past positions.
/// Outside autodiff the entries live in buffers with room to grow (doubling), so a decoding step writes its own
/// entries in place instead of copying the whole cache; a <see cref="Clone"/> shares them until either side writes.
/// </summary>
public sealed class KvCache
{
    // Per layer: the buffers (positions [0, _length) committed, then room), or exact tensors under autodiff.
    readonly Tensor?[] _k, _v;
    readonly int[] _length, _pending;
    // This call's entries where they did not go into a buffer (autodiff: the appended tensor must stay in the graph).
    readonly Tensor?[] _pendingK, _pendingV;
    // The buffer is also another clone's: copied before this cache writes into it.
    readonly bool[] _shared;
    // The buffer was allocated since the last KeepBuffers (so a step's scope must not free it).
    readonly bool[] _fresh;
    // ReserveRow's [kv heads, capacity, width] views of a batch-of-one layer's buffers, and the key buffer they view.
    readonly Tensor?[] _keyRows, _valueRows, _rowsOf;

    /// <summary>An empty cache for a stack of <paramref name="layers"/> layers.</summary>
    public KvCache(int layers)
    {
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(layers), layers, "kv cache: a stack needs at least one layer");
        _k = new Tensor?[layers]; _v = new Tensor?[layers]; _pendingK = new Tensor?[layers]; _pendingV = new Tensor?[layers];
        _length = new int[layers]; _pending = new int[layers]; _shared = new bool[layers]; _fresh = new bool[layers];
        _keyRows = new Tensor?[layers]; _valueRows = new Tensor?[layers]; _rowsOf = new Tensor?[layers];
    }

    /// <summary>Number of layers.</summary>
    public int Layers => _k.Length;

    /// <summary>Tokens consumed so far (the position of the next call's first token).</summary>
    public int Position { get; private set; }

    /// <summary>Length of the prompt: the token count of the first call.</summary>
    public int PromptLength { get; private set; }

    /// <summary>Number of cached positions of <paramref name="layer"/> (smaller than <see cref="Position"/> when a stack runner kept the layer from writing, as a loop with <c>LoopCache.None</c> does).</summary>
    public int Length(int layer) => _length[layer];

    /// <summary>The committed keys and values of <paramref name="layer"/>, or nulls when it has none.</summary>
    public (Tensor? Keys, Tensor? Values) Get(int layer) =>
        _length[layer] == 0 ? (null, null) : (_k[layer]!.Narrow(2, 0, _length[layer]), _v[layer]!.Narrow(2, 0, _length[layer]));

    /// <summary>Stashes this call's keys and values of <paramref name="layer"/> ([batch, kv heads, positions, head dim]); a later stash in the same call replaces it.</summary>
    public void Stash(int layer, Tensor keys, Tensor values) => Extend(layer, keys, values, write: true);

    /// <summary>
    /// The committed entries of <paramref name="layer"/> followed by this call's <paramref name="keys"/> and
    /// <paramref name="values"/>, which are stashed too when <paramref name="write"/>.
    /// </summary>
    internal (Tensor Keys, Tensor Values) Extend(int layer, Tensor keys, Tensor values, bool write)
    {
        ArgumentNullException.ThrowIfNull(keys); ArgumentNullException.ThrowIfNull(values);
        bool graph = Autograd.IsEnabled && (keys.RequiresGrad || values.RequiresGrad);
        if (!write || graph)
        {
            CheckEntries(layer, keys, values);
            var (pk, pv) = Get(layer);
            var k = pk is null ? keys : Tensor.Concat([pk, keys], 2);
            var v = pv is null ? values : Tensor.Concat([pv, values], 2);
            if (write) { _pendingK[layer] = keys; _pendingV[layer] = values; _pending[layer] = keys.Shape[2]; }
            return (k, v);
        }
        using var _ = Autograd.IsEnabled ? Autograd.NoGrad() : null;
        var (keySlots, valueSlots, all, allValues) = Reserve(layer, keys, values);
        keySlots.Copy_(keys);
        valueSlots.Copy_(values);
        return (all, allValues);
    }

    void CheckEntries(int layer, Tensor keys, Tensor values)
    {
        if (keys.Rank != 4 || values.Rank != 4 || values.Shape[0] != keys.Shape[0] || values.Shape[1] != keys.Shape[1] || values.Shape[2] != keys.Shape[2])
            throw new ArgumentException($"kv cache: keys and values must be [batch, kv heads, positions, width] with the same first three extents, got keys {keys.Shape} and values {values.Shape}", nameof(values));
        if (_length[layer] == 0) return;
        CheckAgainst(layer, keys, _k[layer]!, nameof(keys));
        CheckAgainst(layer, values, _v[layer]!, nameof(values));
    }

    void CheckAgainst(int layer, Tensor entries, Tensor past, string name)
    {
        if (entries.Shape[0] != past.Shape[0] || entries.Shape[1] != past.Shape[1] || entries.Shape[3] != past.Shape[3] || entries.DType != past.DType || entries.Device != past.Device)
            throw new ArgumentException($"kv cache: layer {layer}'s {name} are {entries.DType} {entries.Shape} on {entries.Device}, but its cached entries are {past.DType} [{past.Shape[0]}, {past.Shape[1]}, {_length[layer]}, {past.Shape[3]}] on {past.Device}", name);
    }

    /// <summary>
    /// Stashes room for this call's entries of <paramref name="layer"/>, shaped like <paramref name="keys"/> and
    /// <paramref name="values"/> (checked against the committed entries; not read): the slots the caller writes them to,
    /// and the committed entries followed by those slots. Outside autodiff.
    /// </summary>
    internal (Tensor KeySlots, Tensor ValueSlots, Tensor Keys, Tensor Values) Reserve(int layer, Tensor keys, Tensor values)
    {
        int len = Grow(layer, keys, values), t = keys.Shape[2];
        var (k, v) = (_k[layer]!, _v[layer]!);
        return (k.Narrow(2, len, t), v.Narrow(2, len, t), k.Narrow(2, 0, len + t), v.Narrow(2, 0, len + t));
    }

    /// <summary>
    /// <see cref="Reserve"/> for one position of a batch of one (<paramref name="keys"/> and <paramref name="values"/>
    /// [1, kv heads, 1, width]), as [kv heads, positions, width] views: a decoding step's.
    /// </summary>
    internal (Tensor KeySlot, Tensor ValueSlot, Tensor Keys, Tensor Values) ReserveRow(int layer, Tensor keys, Tensor values)
    {
        int len = Grow(layer, keys, values);
        if (!ReferenceEquals(_rowsOf[layer], _k[layer]))
        {
            var (k, v) = (_k[layer]!, _v[layer]!);
            (_keyRows[layer], _valueRows[layer], _rowsOf[layer]) = (k.Reshape(k.Shape[1], k.Shape[2], k.Shape[3]), v.Reshape(v.Shape[1], v.Shape[2], v.Shape[3]), k);
        }
        var (kr, vr) = (_keyRows[layer]!, _valueRows[layer]!);
        return (kr.Narrow(1, len, 1), vr.Narrow(1, len, 1), kr.Narrow(1, 0, len + 1), vr.Narrow(1, 0, len + 1));
    }

    // Checks this call's entries, makes room for them and stashes them; returns the committed length.
    int Grow(int layer, Tensor keys, Tensor values)
    {
        CheckEntries(layer, keys, values);
        int len = _length[layer], t = keys.Shape[2];
        var (oldK, oldV) = (_k[layer], _v[layer]);
        _k[layer] = Room(_k[layer], keys, len, len + t, layer);
        _v[layer] = Room(_v[layer], values, len, len + t, layer);
        _fresh[layer] |= !ReferenceEquals(oldK, _k[layer]) || !ReferenceEquals(oldV, _v[layer]);
        _shared[layer] = false;
        _pendingK[layer] = null; _pendingV[layer] = null; _pending[layer] = t;
        return len;
    }

    // A buffer of `entries`' batch, heads, width, dtype and device (Reserve has checked them against any committed
    // entries) that holds at least `need` positions and owns its first `len`: the current one when it does, else a
    // larger (or unshared) copy.
    Tensor Room(Tensor? buffer, Tensor entries, int len, int need, int layer)
    {
        var s = entries.Shape;
        if (buffer is not null && !_shared[layer] && buffer.Shape[2] >= need && buffer.Shape[0] == s[0] && buffer.Shape[1] == s[1]
            && buffer.Shape[3] == s[3] && buffer.DType == entries.DType && buffer.Device == entries.Device)
            return buffer;
        var grown = Tensor.Empty([s[0], s[1], Math.Max(16, 2 * need), s[3]], entries.DType, entries.Device);
        if (len > 0) grown.Narrow(2, 0, len).Copy_(buffer!.Narrow(2, 0, len));
        return grown;
    }

    /// <summary>
    /// Keeps the buffers allocated since the last call alive past <paramref name="scope"/> (a decoding step's scope, which
    /// frees everything else the step made).
    /// </summary>
    internal void KeepBuffers(TensorScope scope)
    {
        for (int i = 0; i < Layers; i++)
        {
            if (!_fresh[i]) continue;
            scope.Keep(_k[i]!); scope.Keep(_v[i]!);
            _fresh[i] = false;
        }
    }

    /// <summary>A copy that shares the entries but not the bookkeeping, so both can go on independently.</summary>
    public KvCache Clone()
    {
        var c = new KvCache(Layers) { Position = Position, PromptLength = PromptLength };
        Array.Copy(_k, c._k, Layers); Array.Copy(_v, c._v, Layers); Array.Copy(_length, c._length, Layers);
        for (int i = 0; i < Layers; i++) _shared[i] = c._shared[i] = _k[i] is not null;
        return c;
    }

    /// <summary>Appends every layer's stash to its entries and advances <see cref="Position"/> by <paramref name="tokens"/>.</summary>
    public void Commit(int tokens)
    {
        if (Position == 0) PromptLength = tokens;
        for (int i = 0; i < _k.Length; i++)
        {
            if (_pending[i] == 0) continue;
            if (_pendingK[i] is { } pk)
            {
                // Entries in the graph: appended as tensors, so gradients reach them.
                var (k, v) = Get(i);
                _k[i] = k is null ? pk.Contiguous() : Tensor.Concat([k, pk], 2);
                _v[i] = v is null ? _pendingV[i]!.Contiguous() : Tensor.Concat([v, _pendingV[i]!], 2);
                _shared[i] = false;
                _pendingK[i] = null; _pendingV[i] = null;
            }
            _length[i] += _pending[i];
            _pending[i] = 0;
        }
        Position += tokens;
    }
}
