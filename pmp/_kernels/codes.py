"""The integer codes by which Python passes choices to the kernels.

Plain Python (no numba), so that the public modules can name a code without importing the
kernels; the kernel modules import their codes from here.
"""
# activations (pmp._kernels.activations)
TANH = 0
RELU = 1
LEAKY_RELU = 2
SIGMOID = 3
SOFTPLUS = 4
GELU = 5
IDENTITY = 6
COS = 7  # param * cos(z): random Fourier features
SCALED_RELU = 8  # param * max(z, 0): random ReLU features
# activations whose slope follows from their value: forward-sweep values can be reused
SLOPE_FROM_VALUE = (TANH, SIGMOID, RELU, IDENTITY)

# losses (pmp._kernels.readout)
SQUARED = 0
LP = 1
LOGISTIC = 2
CROSS_ENTROPY = 3

# regularisers of the maximisers (pmp._kernels.prox)
L2 = 0
L1_GROUP = 1
L1_ELEMENTWISE = 2

# psi of the fields linear in the control (pmp._kernels.maximize_linear)
OUTER = 0
FEATURES = 1

# "outer" states of at most this dimension run the transposed small-d sweeps
# (pmp._kernels.sweeps)
SMALL_DIM = 8
