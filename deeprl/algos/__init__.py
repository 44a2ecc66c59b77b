"""One file per algorithm; the registry that names them is `deeprl.registry`, their protocol
`deeprl.protocol`."""
