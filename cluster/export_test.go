package cluster

// CloseWithoutGoodbye ends c's connection as a process that exits without
// closing its runtime does: no goodbye reaches the nodes.
func CloseWithoutGoodbye(c *Client) { c.nc.Close() }
