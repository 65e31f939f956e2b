using Kiln.NN;

namespace Kiln.Methods.Certification;

/// <summary>Settings of <see cref="BlackBox.TrainSubstitute"/>.</summary>
public sealed record SubstituteOptions
{
    /// <summary>Substitute training epochs rho (the set doubles after every epoch but the last).</summary>
    public int Rounds { get; init; } = 4;
    /// <summary>AdamW passes over the current substitute set per round.</summary>
    public int Epochs { get; init; } = 50;
    /// <summary>The augmentation step lambda.</summary>
    public double Lambda { get; init; } = 0.1;
    /// <summary>The sign of lambda flips every Tau rounds (the paper's periodic step size); 0 never flips.</summary>
    public int Tau { get; init; }
    /// <summary>The AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 1e-2;
    /// <summary>The seed of the substitute's initialisation.</summary>
    public ulong Seed { get; init; }
}

/// <summary>
/// The black-box substitute attack of Papernot et al. (2017): an attacker who can only query the oracle's labels
/// O(x) trains a substitute F on a small set S_0 labelled by the oracle, and grows the set by Jacobian-based data
/// augmentation, S_{rho+1} = S_rho U {x + lambda_rho sign(dF_{O(x)}(x) / dx) : x in S_rho}, where F gives class
/// probabilities; adversarial examples crafted on the substitute with FGSM (<see cref="Adversarial.Fgsm"/>) then
/// transfer to the oracle.
/// </summary>
public static class BlackBox
{
    /// <summary>
    /// Jacobian-based augmentation of the rows of <paramref name="x"/> ([n, d]): x + lambda sign(d softmax(f(x))_c / dx)
    /// with c = <paramref name="labels"/> (Int64 [n], the oracle's labels), detached.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The labels do not match the rows.</exception>
    public static Tensor JacobianAugment(Func<Tensor, Tensor> logits, Tensor x, Tensor labels, double lambda)
    {
        ArgumentNullException.ThrowIfNull(logits); ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(labels);
        if (x.Rank != 2 || labels.Rank != 1 || labels.Shape[0] != x.Shape[0]) throw new ShapeMismatchException("jacobian_augment", nameof(labels), $"x must be [n, d] with labels [n], got {x.Shape} and {labels.Shape}");
        if (!double.IsFinite(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "jacobian augmentation: lambda must be finite");
        var xi = x.Detach().RequiresGrad_();
        // The rows are independent, so the gradient of the summed chosen probabilities is each row's Jacobian row.
        var chosen = logits(xi).Softmax(1).Gather(1, labels.To(DType.Int64).Unsqueeze(1)).Sum();
        return (x + Autograd.Grad(chosen, xi).Sign() * lambda).Detach();
    }

    /// <summary>
    /// Trains <paramref name="substitute"/> on the oracle's labels of S_0 = <paramref name="initial"/>, growing S by
    /// <see cref="JacobianAugment"/> between rounds (lambda_rho = lambda (-1)^floor(rho / tau)). Returns the final set's size.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Rounds or epochs below 1, tau negative, or a rate not positive.</exception>
    public static int TrainSubstitute(Func<Tensor, Tensor> oracle, Module<Tensor, Tensor> substitute, Tensor initial, SubstituteOptions options)
    {
        ArgumentNullException.ThrowIfNull(oracle); ArgumentNullException.ThrowIfNull(substitute); ArgumentNullException.ThrowIfNull(initial); ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Rounds, 1, "Rounds");
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Epochs, 1, "Epochs");
        ArgumentOutOfRangeException.ThrowIfNegative(options.Tau, "Tau");
        if (!(options.LearningRate > 0) || double.IsInfinity(options.LearningRate)) throw new ArgumentOutOfRangeException("LearningRate", options.LearningRate, "substitute: the learning rate must be positive and finite");
        var set = initial.Detach();
        var optimizer = new AdamW(substitute.Parameters(), options.LearningRate, weightDecay: 0);
        for (int rho = 0; rho < options.Rounds; rho++)
        {
            Tensor labels;
            using (Autograd.NoGrad()) labels = oracle(set).To(DType.Int64).Detach();
            for (int e = 0; e < options.Epochs; e++)
            {
                optimizer.ZeroGrad();
                Losses.CrossEntropy(substitute.Call(set), labels).Backward();
                optimizer.Step();
            }
            if (rho + 1 == options.Rounds) break;
            double lambda = options.Tau > 0 && rho / options.Tau % 2 == 1 ? -options.Lambda : options.Lambda;
            set = Tensor.Concat([set, JacobianAugment(substitute.Call, set, labels, lambda)], 0);
        }
        return set.Shape[0];
    }

    /// <summary>The transfer rate: the fraction of <paramref name="adversarial"/> rows ([n, d]) that the oracle labels differently from <paramref name="labels"/>.</summary>
    public static double TransferRate(Func<Tensor, Tensor> oracle, Tensor adversarial, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(oracle); ArgumentNullException.ThrowIfNull(adversarial); ArgumentNullException.ThrowIfNull(labels);
        Tensor predicted;
        using (Autograd.NoGrad()) predicted = oracle(adversarial).To(DType.Int64);
        var p = predicted.ToArray<long>(); var y = labels.To(DType.Int64).ToArray<long>();
        if (p.Length != y.Length) throw new ShapeMismatchException("transfer_rate", nameof(labels), $"{p.Length} oracle labels for {y.Length} labels");
        return p.Length == 0 ? 0 : p.Where((v, i) => v != y[i]).Count() / (double)p.Length;
    }
}
