namespace Kiln.Methods.Generative;

/// <summary>The three IGN losses of one batch and their weighted sum.</summary>
/// <param name="Reconstruction">L_rec = δ_θ(x) = mean (f_θ(x) − x)²: real data must be fixed points.</param>
/// <param name="Idempotence">L_idem = δ_θ′(f_θ(z)): f(z) must be a fixed point, differentiated through the inner f only.</param>
/// <param name="Tightness">L_tight = −δ_θ(f_θ′(z)) (optionally clamped): the fixed-point set must stay tight, differentiated through the outer f only.</param>
/// <param name="Total">λ_r L_rec + λ_i L_idem + λ_t L_tight.</param>
public sealed record IgnLosses(Tensor Reconstruction, Tensor Idempotence, Tensor Tightness, Tensor Total);

/// <summary>
/// Idempotent Generative Network (Shocher et al.): a network f trained so that f(f(z)) = f(z) maps noise z onto the
/// data manifold of its fixed points. With δ_θ(y) = D(f_θ(y), y), D the mean squared error, and θ′ a stop-gradient
/// copy of θ: L_rec = δ_θ(x), L_idem = δ_θ′(f_θ(z)) (only the inner application gets gradient: it pulls f(z) onto the
/// manifold without enlarging it), and L_tight = −δ_θ(f_θ′(z)) (only the outer application: it pushes the manifold to
/// exclude what is not data). The tightness term may be clamped to tanh(L_tight / (a L_rec)) a L_rec.
/// </summary>
public static class IdempotentGenerativeNetwork
{
    /// <summary>
    /// The IGN losses of real data <paramref name="x"/> and noise <paramref name="z"/> (same shape). <paramref name="model"/>
    /// is f_θ with gradients to θ; <paramref name="frozenModel"/> is the same network with detached parameters (θ′).
    /// <paramref name="tightClamp"/> is the clamp's a (null: unclamped); the clamp's L_rec is taken as a constant.
    /// </summary>
    /// <exception cref="ShapeMismatchException">x and z differ in shape, or the model changes the shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A weight is negative or not finite, or a is not positive and finite.</exception>
    public static IgnLosses Losses(Func<Tensor, Tensor> model, Func<Tensor, Tensor> frozenModel, Tensor x, Tensor z,
        double reconstructionWeight, double idempotenceWeight, double tightnessWeight, double? tightClamp = null)
    {
        const string op = "ign_losses";
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(frozenModel);
        if (x.Shape != z.Shape) throw new ShapeMismatchException(op, nameof(z), x.Shape, z.Shape, "noise must have the data's shape");
        Weight(reconstructionWeight, nameof(reconstructionWeight));
        Weight(idempotenceWeight, nameof(idempotenceWeight));
        Weight(tightnessWeight, nameof(tightnessWeight));
        if (tightClamp is double a && !(a > 0 && double.IsFinite(a))) throw new ArgumentOutOfRangeException(nameof(tightClamp), a, $"{op}: the clamp a must be positive and finite");

        var fx = Apply(model, x);
        var fz = Apply(model, z);
        var fzStopped = fz.Detach();
        var rec = Distance(fx, x);
        var idem = Distance(Apply(frozenModel, fz), fz);
        var tight = -Distance(Apply(model, fzStopped), fzStopped);
        if (tightClamp is double scale)
        {
            var bound = scale * rec.Detach();
            tight = (tight / bound).Tanh() * bound;
        }
        return new IgnLosses(rec, idem, tight, reconstructionWeight * rec + idempotenceWeight * idem + tightnessWeight * tight);

        static void Weight(double w, string name)
        {
            if (!(w >= 0 && double.IsFinite(w))) throw new ArgumentOutOfRangeException(name, w, $"{op}: {name} must be non-negative and finite");
        }

        static Tensor Apply(Func<Tensor, Tensor> f, Tensor input)
        {
            var y = f(input);
            if (y.Shape != input.Shape) throw new ShapeMismatchException(op, "model", input.Shape, y.Shape, "the model must map a batch to its own shape");
            return y;
        }
    }

    static Tensor Distance(Tensor a, Tensor b) => (a - b).Pow(2).Mean();
}
