package agent

// DumpsDir, inside the state directory, is where on_crash writes its
// dumps (the agent's own; user dumps go to the allowed directories).
const DumpsDir = "dumps"
