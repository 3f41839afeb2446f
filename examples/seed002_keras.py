"""Seed 002's Keras program (a 7-4-2-1 regressor, He-normal initialised, Adam on MSE with an MAE metric),
run by fastconv.keras with only its imports changed.

The seed's lines -- ``base_model()`` as written, then ``fit(..., validation_split=0.2)`` -- are its own.  The
seed brings no data, so this example makes an equivalent regression problem offline and says so: 7 features
drawn uniformly in [-1, 1], target ``y = sin(2 x0) + x1 * x2 - 0.5 x3**2 + 0.3 x4 + noise`` (features 5 and 6
carry no signal), 2,000 samples, a held-out test set of 500.

Run: python examples/seed002_keras.py [epochs]    (default 100)
"""
import sys

import numpy as np

from fastconv.keras.layers import Dense  # was: from keras.layers import Dense
from fastconv.keras.models import Sequential  # was: from keras.models import Sequential
from fastconv.keras.utils import set_random_seed


def base_model():
    # Initialising the ANN
    regressor = Sequential()
    # Adding the input layer and the first hidden layer
    regressor.add(Dense(units = 4, kernel_initializer = 'he_normal', activation = 'relu', input_dim = 7))  # noqa: E251
    # Adding the second hidden layer
    regressor.add(Dense(units = 2, kernel_initializer = 'he_normal', activation = 'relu'))  # noqa: E251
    # Adding the output layer
    regressor.add(Dense(units = 1, kernel_initializer = 'he_normal'))  # noqa: E251
    # Compiling the ANN
    regressor.compile(optimizer = 'adam', loss = 'mse', metrics = ['mae'])  # noqa: E251
    return regressor


def make_data(n, rng):
    x = rng.uniform(-1, 1, (n, 7)).astype("float32")
    y = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] ** 2 + 0.3 * x[:, 4]
    return x, (y + 0.05 * rng.standard_normal(n)).astype("float32")


if __name__ == "__main__":
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    print("seed 002 brings no data: using a generated 7-feature regression problem (2,000 train / 500 test)")
    rng = np.random.default_rng(2)
    X_train, y_train = make_data(2000, rng)
    X_test, y_test = make_data(500, rng)
    set_random_seed(2)
    regressor = base_model()
    history = regressor.fit(X_train, y_train, batch_size=32, epochs=epochs, validation_split=0.2, verbose=0)
    print(f"epoch {len(history.history['loss'])}: loss {history.history['loss'][-1]:.4f}, "
          f"val_loss {history.history['val_loss'][-1]:.4f}, val_mae {history.history['val_mae'][-1]:.4f}")
    mse, mae = regressor.evaluate(X_test, y_test, verbose=0)
    print(f"test mse: {mse:.4f}")
    print(f"test mae: {mae:.4f}")
    print(f"baseline (predict the mean): mse {np.var(y_test):.4f}")
