namespace Kiln.Backends;

/// <summary>
/// Float16 and BFloat16 compute on any backend, with PyTorch's CPU semantics: each half input is widened into a Float32
/// temporary, the backend's Float32 kernel runs, and each half output is rounded once on store (round to nearest even).
/// Reductions, scans, softmax, norms and attention therefore accumulate in Float32. Operands of other dtypes (indices,
/// masks) pass through untouched. A backend routes its half cases here; a half kernel of its own may replace a route.
/// </summary>
public static class HalfCompute
{
    /// <summary>
    /// Runs <paramref name="float32"/> on Float32 stand-ins for the half tensors among <paramref name="inputs"/> and
    /// <paramref name="outputs"/> (other tensors and nulls are passed as they are), then rounds the stand-ins of the
    /// half outputs into them. Outputs the op also reads (<paramref name="readOutputs"/>: a scatter's target) are
    /// widened first. Broadcast (zero-stride) axes of an input stay broadcast in its stand-in.
    /// </summary>
    public static void Run(IMemoryBackend backend, Tensor?[] inputs, Tensor?[] outputs, Action<Tensor?[], Tensor?[]> float32, bool readOutputs = false)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(float32);
        using var _ = Autograd.NoGrad();
        var temps = new List<Tensor>();
        try
        {
            var wideIn = inputs.Select(t => t is { DType: DType.Float16 or DType.BFloat16 } ? Widen(backend, t, temps) : t).ToArray();
            var wideOut = new Tensor?[outputs.Length];
            for (int i = 0; i < outputs.Length; i++)
            {
                var y = outputs[i];
                if (y is not { DType: DType.Float16 or DType.BFloat16 }) { wideOut[i] = y; continue; }
                // An output that is also an input (an in-place op) gets its own stand-in: the input's was read already.
                var w = Tensor.Empty(y.Shape, DType.Float32, backend.Device);
                temps.Add(w);
                if (readOutputs) backend.Copy(y, w);
                wideOut[i] = w;
            }
            float32(wideIn, wideOut);
            for (int i = 0; i < outputs.Length; i++)
                if (outputs[i] is { DType: DType.Float16 or DType.BFloat16 } y) backend.Copy(wideOut[i]!, y);
        }
        finally
        {
            foreach (var t in temps) t.Dispose();
        }
    }

    // The Float32 copy of x, compact along its broadcast axes (each read once) and broadcast back to x's shape.
    static Tensor Widen(IMemoryBackend backend, Tensor x, List<Tensor> temps)
    {
        var compact = x;
        var strides = x.Layout.Strides;
        for (int d = 0; d < x.Rank; d++)
            if (strides[d] == 0 && x.Shape[d] > 1) compact = compact.Narrow(d, 0, 1);
        var w = Tensor.Empty(compact.Shape, DType.Float32, backend.Device);
        temps.Add(w);
        backend.Copy(compact, w);
        return ReferenceEquals(compact, x) ? w : w.BroadcastTo(x.Shape);
    }
}
