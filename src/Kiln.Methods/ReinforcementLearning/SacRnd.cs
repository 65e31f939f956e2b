using Kiln.NN;

namespace Kiln.Methods.ReinforcementLearning;

/// <summary>
/// The random prior f̄(s, a) of SAC-RND: an MLP on the action whose last hidden layer is modulated by the state through
/// <see cref="FiLM"/>, then ReLU and a linear head. Conditioning by FiLM (rather than concatenation) is what makes the
/// bonus ||f(s,a) - f̄(s,a)||² discriminate actions well enough for an actor to minimise it (Nikulin et al., 2023).
/// Its parameters do not require gradients: the prior stays random.
/// </summary>
public sealed class RndPrior : Module
{
    readonly MLP _action;
    readonly FiLM _film;
    readonly Linear _head;

    /// <summary>Creates the prior with one hidden action layer of width <paramref name="hidden"/>.</summary>
    public RndPrior(int stateDim, int actionDim, int embeddingDim, int hidden, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        _action = RegisterModule("action", new MLP([actionDim, hidden, hidden], ActivationKind.Relu, 0, generator, dtype, device));
        _film = RegisterModule("film", new FiLM(stateDim, hidden, generator, dtype, device));
        _head = RegisterModule("head", new Linear(hidden, embeddingDim, true, generator, dtype, device));
        foreach (var p in Parameters()) p.RequiresGrad = false;
    }

    /// <summary>f̄(s, a) [B, E] for states [B, S] and actions [B, A].</summary>
    public Tensor Forward(Tensor states, Tensor actions) => _head.Call(_film.Forward(_action.Call(actions), states).Relu());
}

/// <summary>
/// Random network distillation over state-action pairs: a trained predictor f(s, a) (an MLP on [s, a]) regresses a
/// fixed random <see cref="RndPrior"/>; the anti-exploration bonus b(s, a) = ||f(s, a) - f̄(s, a)||² is small on the
/// offline data and grows off its support.
/// </summary>
public sealed class RandomNetworkDistillation : Module
{
    /// <summary>Creates predictor and prior; both have hidden width <paramref name="hidden"/> and output width <paramref name="embeddingDim"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public RandomNetworkDistillation(int stateDim, int actionDim, int embeddingDim, int hidden, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (stateDim <= 0) throw new ArgumentOutOfRangeException(nameof(stateDim), stateDim, "rnd: stateDim must be positive");
        if (actionDim <= 0) throw new ArgumentOutOfRangeException(nameof(actionDim), actionDim, "rnd: actionDim must be positive");
        StateDim = stateDim; ActionDim = actionDim;
        Predictor = RegisterModule("predictor", new MLP([stateDim + actionDim, hidden, hidden, embeddingDim], ActivationKind.Relu, 0, generator, dtype, device));
        Prior = RegisterModule("prior", new RndPrior(stateDim, actionDim, embeddingDim, hidden, generator, dtype, device));
    }

    /// <summary>The state width.</summary>
    public int StateDim { get; }
    /// <summary>The action width.</summary>
    public int ActionDim { get; }
    /// <summary>The trained predictor f.</summary>
    public MLP Predictor { get; }
    /// <summary>The fixed random prior f̄.</summary>
    public RndPrior Prior { get; }

    /// <summary>b(s, a) = Σ_e (f(s,a)_e - f̄(s,a)_e)² [B] for states [B, S] and actions [B, A]; differentiable in the actions and the predictor.</summary>
    /// <exception cref="ShapeMismatchException">The inputs are not [B, S] and [B, A].</exception>
    public Tensor Bonus(Tensor states, Tensor actions)
    {
        ArgumentNullException.ThrowIfNull(states);
        ArgumentNullException.ThrowIfNull(actions);
        if (states.Rank != 2 || states.Shape[1] != StateDim || actions.Rank != 2 || actions.Shape[1] != ActionDim || actions.Shape[0] != states.Shape[0])
            throw new ShapeMismatchException("rnd bonus", nameof(actions), $"states {states.Shape} and actions {actions.Shape} must be [B, {StateDim}] and [B, {ActionDim}]");
        var diff = Predictor.Call(Tensor.Concat([states, actions], 1)) - Prior.Forward(states, actions);
        return (diff * diff).Sum(1);
    }

    /// <summary>The predictor's loss: the mean bonus over a batch of dataset pairs.</summary>
    public Tensor Loss(Tensor states, Tensor actions) => Bonus(states, actions).Mean();
}

/// <summary>SAC-RND's two penalised objectives (soft actor-critic with the RND bonus as an anti-exploration penalty).</summary>
public static class SacRnd
{
    /// <summary>
    /// The actor loss mean_B(α log π(a|s) - Q(s, a) + β_actor b(s, a)) for actions a ~ π(·|s) [B]: the actor maximises the
    /// soft value while being pulled back to the data's support.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The inputs are not three [B] vectors.</exception>
    /// <exception cref="ArgumentOutOfRangeException">α or β is negative or not finite.</exception>
    public static Tensor ActorLoss(Tensor q, Tensor logProb, Tensor bonus, double alpha, double betaActor)
    {
        CheckVectors("sac-rnd actor", q, logProb, bonus);
        CheckWeight(alpha, nameof(alpha));
        CheckWeight(betaActor, nameof(betaActor));
        return (alpha * logProb - q + betaActor * bonus).Mean();
    }

    /// <summary>
    /// The critic's regression target y = r + γ (1 - done) (Q'(s', a') - α log π(a'|s') - β_critic b(s', a')) with
    /// a' ~ π(·|s') and Q' the target critic (the minimum over the ensemble); detached, as the critic regresses onto it.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The inputs are not five [B] vectors.</exception>
    /// <exception cref="ArgumentOutOfRangeException">γ is outside [0, 1], or α or β is negative or not finite.</exception>
    public static Tensor CriticTarget(Tensor rewards, Tensor dones, Tensor nextQ, Tensor nextLogProb, Tensor nextBonus, double gamma, double alpha, double betaCritic)
    {
        CheckVectors("sac-rnd critic", rewards, dones, nextQ, nextLogProb, nextBonus);
        if (!(gamma >= 0 && gamma <= 1)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "sac-rnd: gamma must be in [0, 1]");
        CheckWeight(alpha, nameof(alpha));
        CheckWeight(betaCritic, nameof(betaCritic));
        return (rewards + gamma * (1.0 - dones) * (nextQ - alpha * nextLogProb - betaCritic * nextBonus)).Detach();
    }

    static void CheckVectors(string op, params Tensor[] xs)
    {
        foreach (var x in xs) ArgumentNullException.ThrowIfNull(x);
        if (xs.Any(x => x.Rank != 1 || x.Shape[0] != xs[0].Shape[0]))
            throw new ShapeMismatchException(op, "inputs", $"all inputs must be [B] vectors of one length, got {string.Join(", ", xs.Select(x => x.Shape.ToString()))}");
    }

    static void CheckWeight(double w, string name)
    {
        if (!(w >= 0) || double.IsInfinity(w)) throw new ArgumentOutOfRangeException(name, w, $"sac-rnd: {name} must be non-negative and finite");
    }
}
