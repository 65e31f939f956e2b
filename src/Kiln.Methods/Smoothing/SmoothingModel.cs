using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kiln.Methods.Smoothing;

/// <summary>
/// A trained smoothed classifier for a table: the numerical stump ensemble (its features index
/// <see cref="NumericalColumns"/>), optional categorical stumps for joint certificates, and the noise it was trained for.
/// </summary>
public sealed record SmoothingModel(StumpEnsemble Ensemble, int[] NumericalColumns, CategoricalStumps? Categorical, Noise Noise)
{
    /// <summary>Trains MLE stumps (or RobTreeBoost when <paramref name="boost"/> is given) on the numerical columns and categorical stumps (lr 0.25) on the categorical ones.</summary>
    public static SmoothingModel Train(SmoothingDataset data, Noise noise, TreeBoostOptions? boost = null, bool balanced = true)
    {
        var ensemble = boost is null
            ? MleStumps.Train(data.NumericalTrain, data.YTrain, noise, new MleOptions { Balanced = balanced })
            : RobTreeBoost.Train(data.NumericalTrain, data.YTrain, noise, boost with { Balanced = balanced });
        CategoricalStumps? cat = null;
        if (data.Categorical.Length > 0)
        {
            double n1 = data.YTrain.Count(v => v == 1), n0 = data.YTrain.Length - n1;
            var w = data.YTrain.Select(v => balanced && n1 > 0 && v == 1 ? n0 / n1 : 1.0).ToArray();
            cat = CategoricalStumps.Train(data.Categorical, data.CategoryColumnsTrain, data.YTrain, w);
        }
        return new SmoothingModel(ensemble, data.Numerical, cat, noise);
    }

    /// <summary>Certificates on the test split of <paramref name="data"/>; with categorical stumps, joint certificates against up to <paramref name="l0Radius"/> changed categories.</summary>
    public CertificationResult Certify(SmoothingDataset data, int l0Radius = 0)
    {
        if (data.Numerical.Length != NumericalColumns.Length || !data.Numerical.SequenceEqual(NumericalColumns))
            throw new ArgumentException($"the model was trained on numerical columns [{string.Join(",", NumericalColumns)}] but the data has [{string.Join(",", data.Numerical)}]", nameof(data));
        var certs = Categorical is null
            ? ExactSmoothing.Certify(Ensemble, data.NumericalTest, Noise)
            : JointCertification.Certify(Ensemble, data.NumericalTest, Categorical, data.CategoryCodesTest, data.YTest, Noise, l0Radius);
        return new CertificationResult(certs, data.YTest);
    }

    /// <summary>The model as JSON (format "kiln-smooth-model-1").</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["format"] = "kiln-smooth-model-1",
            ["noise"] = Noise.Kind.ToString().ToLowerInvariant(),
            ["scale"] = Noise.Scale,
            ["numericalColumns"] = new JsonArray(NumericalColumns.Select(c => (JsonNode)c).ToArray()),
            ["ensemble"] = JsonNode.Parse(Ensemble.ToJson()),
        };
        if (Categorical is not null)
            o["categorical"] = new JsonArray(Enumerable.Range(0, Categorical.Count).Select(k => (JsonNode)new JsonObject
            {
                ["feature"] = Categorical.Features[k],
                ["values"] = new JsonObject(Categorical.Values(k).Select(kv => KeyValuePair.Create(kv.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), (JsonNode?)kv.Value))),
            }).ToArray());
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads a model written by <see cref="ToJson"/>.</summary>
    /// <exception cref="InvalidDataException">The text is not such a model.</exception>
    public static SmoothingModel FromJson(string json)
    {
        try
        {
            var o = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException("a smoothing model is a JSON object");
            if ((string?)o["format"] != "kiln-smooth-model-1") throw new InvalidDataException("not a smoothing model (expected format \"kiln-smooth-model-1\")");
            var kind = (string?)o["noise"] switch
            {
                "gaussian" => NoiseKind.Gaussian,
                "uniform" => NoiseKind.Uniform,
                var k => throw new InvalidDataException($"unknown noise '{k}' in the model"),
            };
            var noise = new Noise(kind, (double?)o["scale"] ?? throw new InvalidDataException("the model has no noise scale"));
            var cols = (o["numericalColumns"] as JsonArray ?? throw new InvalidDataException("the model has no numericalColumns")).Select(n => (int)n!).ToArray();
            var ens = StumpEnsemble.FromJson(o["ensemble"]?.ToJsonString() ?? throw new InvalidDataException("the model has no ensemble"));
            CategoricalStumps? cat = null;
            if (o["categorical"] is JsonArray ca)
                cat = new CategoricalStumps(ca.Select(n => (int)n!["feature"]!).ToArray(),
                    ca.Select(n => (IReadOnlyDictionary<int, double>)(n!["values"] as JsonObject ?? throw new InvalidDataException("categorical values must be an object"))
                        .ToDictionary(kv => int.Parse(kv.Key, System.Globalization.CultureInfo.InvariantCulture), kv => (double)kv.Value!)).ToArray());
            return new SmoothingModel(ens, cols, cat, noise);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or ArgumentException or NullReferenceException)
        {
            throw new InvalidDataException($"malformed smoothing model: {e.Message}", e);
        }
    }
}
