// Keeps pes_test_support a real library even before support/ has sources.
