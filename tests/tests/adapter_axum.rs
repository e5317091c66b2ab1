//! The adapter scenarios (`e2e_tests::scenarios`) against axum, through `drain-axum`.

e2e_tests::adapter_scenarios!(e2e_tests::scenarios::Probe {
    program: env!("CARGO_BIN_EXE_axum-probe"),
    disconnect_cancels_handler: true,
});
