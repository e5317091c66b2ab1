//! The adapter scenarios against `poem-probe` (`drain-poem`). poem 3.1 does not cancel a
//! handler whose client disconnects (it keeps polling the request's future after hyper
//! reports the closed connection), so the guard is held until the drain deadline.

e2e_tests::adapter_scenarios!(e2e_tests::scenarios::Probe {
    program: env!("CARGO_BIN_EXE_poem-probe"),
    disconnect_cancels_handler: false,
});
