import { describe, expect, it } from "vitest";
import { counted } from "../../agent/format.ts";

describe("counted", () => {
  it("says one thing in the singular and any other number in the plural", () => {
    expect(counted(1, "change")).toBe("1 change");
    expect(counted(0, "change")).toBe("0 changes");
    expect(counted(2, "change")).toBe("2 changes");
  });

  it("takes the plural of a noun that does not just add an s", () => {
    expect(counted(1, "entry", "entries")).toBe("1 entry");
    expect(counted(5000, "entry", "entries")).toBe("5000 entries");
  });
});
