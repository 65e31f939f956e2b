using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>
/// The recurrent family's definitions: the fused elementwise part of an LSTM step and of a GRU step
/// (<see cref="Backends.IFusedBackend.LstmGates"/>, <see cref="Backends.IFusedBackend.GruGates"/>), on states of the
/// case's shape [rows, hidden] with pre-activations out to +-6, which reach both branches of the sigmoid and the
/// saturation of tanh.
/// </summary>
public static class RecurrentOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } = [new GateDefinition(lstm: true), new GateDefinition(lstm: false)];

    sealed class GateDefinition(bool lstm) : OpDefinition(lstm ? "recurrent.lstm_gates" : "recurrent.gru_gates", "recurrent",
        DTypeLists.Floats, new(-6, 6), new Tolerance(4))
    {
        public override int MinRank => 2;
        public override int MaxRank => 2;

        int Gates => lstm ? 4 : 3;

        // The state [rows, hidden] and the pre-activations [rows, gates * hidden] (for a GRU, the input's then the hidden
        // state's), each in the case's layout.
        (Tensor State, Tensor[] Pre) Operands(OpCase c, DType dtype, Device device)
        {
            int rows = c.Shape[0], hidden = c.Shape[1];
            var state = Input([rows, hidden], c.View, c.Seed, dtype, device, new Domain(-3, 3));
            var pre = Enumerable.Range(1, lstm ? 1 : 2).Select(s => Input([rows, Gates * hidden], c.View, c.Seed + (ulong)s, dtype, device, Domain)).ToArray();
            return (state, pre);
        }

        // The backend's kernel on contiguous operands: [2, rows, hidden] (h', c') for an LSTM, [rows, hidden] for a GRU.
        Tensor Run(Tensor state, Tensor[] pre)
        {
            int rows = state.Shape[0], hidden = state.Shape[1];
            var backend = state.Device.Backend;
            if (lstm)
            {
                var hc = Tensor.Empty([2, rows, hidden], state.DType, state.Device);
                backend.LstmGates(pre[0].Contiguous(), state.Contiguous(), rows, hidden, hc);
                return hc;
            }
            var y = Tensor.Empty([rows, hidden], state.DType, state.Device);
            backend.GruGates(pre[0].Contiguous(), pre[1].Contiguous(), state.Contiguous(), rows, hidden, y);
            return y;
        }

        // The reference row by row, in the kernel's output layout.
        double[] Expected(double[] state, double[][] pre, int rows, int hidden)
        {
            var y = new double[(lstm ? 2 : 1) * rows * hidden];
            int g = Gates * hidden;
            for (int r = 0; r < rows; r++)
            {
                var s = state.AsSpan(r * hidden, hidden);
                if (lstm)
                {
                    var (h2, c2) = Reference.LstmGates(pre[0].AsSpan(r * g, g), s);
                    h2.CopyTo(y, r * hidden);
                    c2.CopyTo(y, (rows + r) * hidden);
                }
                else Reference.GruGates(pre[0].AsSpan(r * g, g), pre[1].AsSpan(r * g, g), s).CopyTo(y, r * hidden);
            }
            return y;
        }

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var (state, pre) = Operands(c, dtype, device);
            var expected = Expected(state.Contiguous().ToDoubleArray(), [.. pre.Select(p => p.Contiguous().ToDoubleArray())], c.Shape[0], c.Shape[1]);
            return Tolerance.Check(expected, Run(state, pre).ToDoubleArray(), dtype, c, Name);
        }

        /// <summary>Special values planted in the (first) pre-activations of three rows of eight units.</summary>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            var (state, pre) = Operands(new OpCase([3, 8], InputView.Contiguous, 17), dtype, device);
            double[] sd = state.ToDoubleArray(), other = lstm ? [] : pre[1].ToDoubleArray();
            int[] shape = [3, Gates * 8];
            return SpecialValues.Planted(this, device, dtype, relaxed, pre[0].ToDoubleArray(), shape,
                v => Expected(sd, lstm ? [v] : [v, other], 3, 8), t => Run(state, lstm ? [t] : [t, pre[1]]));
        }
    }
}
