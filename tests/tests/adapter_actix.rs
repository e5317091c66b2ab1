//! The adapter scenarios (`e2e_tests::scenarios`) against the actix-web probe.

e2e_tests::adapter_scenarios!(e2e_tests::scenarios::Probe {
    program: env!("CARGO_BIN_EXE_actix-probe"),
    disconnect_cancels_handler: false,
});
