namespace Kiln.Methods.SelfSupervised;

/// <summary>
/// Gradient Cache (Gao, Zhang, Han and Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
/// Setup", RepL4NLP 2021): backpropagates a loss over the representations of a large batch while the encoders hold the
/// activations of only one chunk at a time.
/// </summary>
public static class GradCache
{
    /// <summary>
    /// One GradCache backward pass, accumulating into the encoders' parameters' <see cref="Tensor.Grad"/> exactly the
    /// gradient that <c>loss(encoders[k](inputs[k]) for each k).Backward()</c> would, and returning the loss (detached).
    /// <list type="number">
    /// <item>Graph-less forward: each input group k is encoded chunk by chunk (rows [c, c + chunkSize)) under
    /// <see cref="Autograd.NoGrad"/>, and the chunks' representations are concatenated into R_k.</item>
    /// <item>Representation gradient: the loss is computed on leaf copies of R_1..R_K and differentiated with respect
    /// to them, giving the cached gradients G_k = ∂L/∂R_k.</item>
    /// <item>Sub-batch backward: each chunk is encoded again, with its graph, and backpropagated with the matching rows
    /// of G_k as its seed; parameter gradients accumulate over the chunks (the chain rule: ∂L/∂θ = Σ_chunks
    /// (∂R_chunk/∂θ)ᵀ G_chunk).</item>
    /// </list>
    /// The equality needs the second encoding to repeat the first: the <paramref name="generators"/> that the encoders
    /// draw from (dropout) are rewound to each chunk's starting counter before its second encoding, and left where the
    /// first pass ended. Layers with batch statistics (batch norm in training mode) make a chunk's output depend on
    /// its chunk, so the result then equals backprop through a chunked forward, not a full-batch one.
    /// </summary>
    /// <param name="encoders">One encoder per input group (a shared encoder may appear more than once); each maps rows [m, ...] to representations [m, ...].</param>
    /// <param name="inputs">The input groups, each [n_k, ...] (rows are samples).</param>
    /// <param name="loss">The scalar loss of the representations of all groups, in order.</param>
    /// <param name="chunkSize">Rows encoded at once.</param>
    /// <param name="generators">Random streams the encoders draw from, replayed for the second encoding.</param>
    /// <exception cref="ArgumentException">The encoder and input counts differ, there are none, an input has no rows, an
    /// encoder's output does not keep its input's row count, or the loss is not a scalar.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> is not positive.</exception>
    public static Tensor Backward(IReadOnlyList<Func<Tensor, Tensor>> encoders, IReadOnlyList<Tensor> inputs, Func<Tensor[], Tensor> loss,
        int chunkSize, IReadOnlyList<Generator>? generators = null)
    {
        ArgumentNullException.ThrowIfNull(encoders); ArgumentNullException.ThrowIfNull(inputs); ArgumentNullException.ThrowIfNull(loss);
        if (encoders.Count != inputs.Count) throw new ArgumentException($"grad_cache: {encoders.Count} encoders for {inputs.Count} input groups; give one encoder per group", nameof(encoders));
        if (inputs.Count == 0) throw new ArgumentException("grad_cache: no input groups", nameof(inputs));
        if (chunkSize <= 0) throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize, "grad_cache: the chunk size must be positive");
        for (int k = 0; k < inputs.Count; k++)
            if (inputs[k].Rank == 0 || inputs[k].Shape[0] == 0)
                throw new ArgumentException($"grad_cache: input group {k} has shape {inputs[k].Shape}; it needs at least one row", nameof(inputs));
        var gens = generators ?? [];

        // 1. Representations without a graph, remembering where each chunk's random draws started.
        var starts = new List<ulong[]>[inputs.Count];
        var reps = new Tensor[inputs.Count];
        using (Autograd.NoGrad())
        {
            for (int k = 0; k < inputs.Count; k++)
            {
                starts[k] = [];
                var parts = new List<Tensor>();
                foreach (var (c, len) in Chunks(inputs[k].Shape[0], chunkSize))
                {
                    starts[k].Add(gens.Select(g => g.Counter).ToArray());
                    var r = encoders[k](inputs[k].Narrow(0, c, len));
                    if (r.Rank == 0 || r.Shape[0] != len) throw new ArgumentException($"grad_cache: encoder {k} maps {len} rows to shape {r.Shape}; it must keep the row count", nameof(encoders));
                    parts.Add(r);
                }
                reps[k] = (parts.Count == 1 ? parts[0] : Tensor.Concat(parts.ToArray(), 0)).Detach().RequiresGrad_();
            }
        }
        var end = gens.Select(g => g.Counter).ToArray();

        // 2. The loss and its gradient with respect to the cached representations.
        var l = loss(reps);
        if (l.Numel != 1) throw new ArgumentException($"grad_cache: the loss has shape {l.Shape}; it must be a scalar", nameof(loss));
        var cached = Autograd.Grad([l], reps);

        // 3. Re-encode each chunk with its graph and backpropagate its rows of the cached gradient.
        for (int k = 0; k < inputs.Count; k++)
        {
            int i = 0;
            foreach (var (c, len) in Chunks(inputs[k].Shape[0], chunkSize))
            {
                for (int j = 0; j < gens.Count; j++) gens[j].Counter = starts[k][i][j];
                var r = encoders[k](inputs[k].Narrow(0, c, len));
                if (r.RequiresGrad) r.Backward(cached[k].Narrow(0, c, len));
                i++;
            }
        }
        for (int j = 0; j < gens.Count; j++) gens[j].Counter = end[j];
        return l.Detach();
    }

    static IEnumerable<(int Start, int Length)> Chunks(int n, int size)
    {
        for (int c = 0; c < n; c += size) yield return (c, Math.Min(size, n - c));
    }
}
