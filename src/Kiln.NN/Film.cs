namespace Kiln.NN;

/// <summary>
/// Feature-wise linear modulation (FiLM; Perez et al., 2018): y = γ(c) ⊙ h + β(c), where [γ, β] = Linear(c) split
/// in halves. Features h [..., F] are scaled and shifted per feature by a function of the condition c [..., C] (same
/// leading dims, or broadcastable). SAC-RND's prior network conditions its action features on the state this way.
/// </summary>
public sealed class FiLM : Module
{
    /// <summary>Creates the layer: the conditioning projection maps <paramref name="conditionFeatures"/> to 2 x <paramref name="features"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public FiLM(int conditionFeatures, int features, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (features <= 0) throw new ArgumentOutOfRangeException(nameof(features), features, "film: features must be positive");
        Features = features;
        Projection = RegisterModule("linear", new Linear(conditionFeatures, 2 * features, true, generator, dtype, device));
    }

    /// <summary>The width F of the modulated features.</summary>
    public int Features { get; }

    /// <summary>The projection c → [γ, β] (weight [2F, C]; γ is the first half of its output).</summary>
    public Linear Projection { get; }

    /// <summary>γ(c) ⊙ h + β(c).</summary>
    /// <exception cref="ShapeMismatchException">The last dimension of <paramref name="features"/> is not <see cref="Features"/>, or the condition's is not the projection's input width.</exception>
    public Tensor Forward(Tensor features, Tensor condition)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(condition);
        if (features.Rank == 0 || features.Shape[-1] != Features)
            throw new ShapeMismatchException("film", nameof(features), $"features have shape {features.Shape}; the last dimension must be {Features}");
        var gb = Projection.Call(condition);
        return gb.Narrow(-1, 0, Features) * features + gb.Narrow(-1, Features, Features);
    }
}
